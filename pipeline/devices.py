"""The smart home's devices file (Home Assistant's intent test fixture shape) and the commands sent to entities."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.errors import ConfigurationError
from pipeline.language import normalize as _fold

logger = logging.getLogger(__name__)

#: The domains the assistant sends commands to (others, such as ``binary_sensor``, can still be asked about).
COMMAND_DOMAINS = frozenset(
    {"light", "switch", "fan", "cover", "climate", "lock", "valve", "media_player", "vacuum", "scene", "script"}
)
#: ``<domain>.<object_id>``: the object id goes into MQTT topics, so it may not hold a topic separator or wildcard.
_ENTITY_ID = re.compile(r"^([a-z_][a-z0-9_]*)\.([^/+#\s][^/+#]*)$")
#: Area, floor and device ids go into MQTT topics too.
_PLAIN_ID = re.compile(r"^[^/+#\s][^/+#]*$")
#: A request's ``context`` (``{"area": "卧室"}``): a few short strings under plain keys.
CONTEXT_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,31}$")
MAX_CONTEXT_ITEMS = 8
MAX_CONTEXT_VALUE = 100


@dataclass(frozen=True, slots=True)
class Floor:
    """A floor of the home (``floors:``); areas name it by id."""

    #: ``first_floor``.
    id: str
    #: ``First floor`` / ``一楼``.
    name: str
    #: Other names said for it.
    aliases: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """Its name, then its aliases."""
        return (self.name, *self.aliases)


@dataclass(frozen=True, slots=True)
class Area:
    """A room or place (``areas:``)."""

    #: ``bedroom``: used in the default MQTT topics.
    id: str
    #: ``卧室`` / ``Bedroom``: what a request says.
    name: str
    #: Other names said for it (``主卧``, ``master bedroom``).
    aliases: tuple[str, ...] = ()
    #: The id of its floor, if any.
    floor: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        """Its name, then its aliases."""
        return (self.name, *self.aliases)


@dataclass(frozen=True, slots=True)
class Entity:
    """Something that can be switched, set or asked about (``entities:``)."""

    #: ``light.bedroom_lamp``: ``<domain>.<object_id>``.
    id: str
    #: ``卧室灯`` / ``Bedroom Lamp``.
    name: str
    #: Other names said for it.
    aliases: tuple[str, ...] = ()
    #: The id of its area, or None.
    area: str | None = None
    #: Its state as the file gives it (``on``, ``off``, ``21.5``), used until a state topic reports one.
    state: str | None = None
    #: ``device_class``, ``unit_of_measurement``, ``command_topic``, ``state_topic``, ``current_temperature``, ...
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def domain(self) -> str:
        return self.id.split(".", 1)[0]

    @property
    def object_id(self) -> str:
        return self.id.split(".", 1)[1]

    @property
    def names(self) -> tuple[str, ...]:
        """Its name, then its aliases."""
        return (self.name, *self.aliases)

    @property
    def command_topic(self) -> str:
        """Where commands for it are published: the ``command_topic`` attribute, or ``home/<area>/<object>/set``."""
        return str(self.attributes.get("command_topic") or f"{self._topic_root}/set")

    @property
    def state_topic(self) -> str:
        """Where it reports its state: the ``state_topic`` attribute, or ``home/<area>/<object>/state``."""
        return str(self.attributes.get("state_topic") or f"{self._topic_root}/state")

    @property
    def _topic_root(self) -> str:
        # An entity in no area leaves the area level out rather than invent one.
        return f"home/{self.area}/{self.object_id}" if self.area else f"home/{self.object_id}"


@dataclass(frozen=True, slots=True)
class Device:
    """A satellite or speaker that sends requests (``devices:``, this project's own key): its area is the
    request's area unless the request names another."""

    #: The device id of its MQTT topics (``assistant/<id>/request``).
    id: str
    #: The id of the area it stands in, or None.
    area: str | None = None


@dataclass(frozen=True, slots=True)
class DevicesConfig:
    """The whole devices file."""

    areas: tuple[Area, ...] = ()
    floors: tuple[Floor, ...] = ()
    entities: tuple[Entity, ...] = ()
    devices: tuple[Device, ...] = ()
    _by_id: dict[str, Entity] = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_state_topic: dict[str, Entity] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_id", {e.id: e for e in self.entities})
        object.__setattr__(self, "_by_state_topic", {e.state_topic: e for e in self.entities})

    @classmethod
    def from_mapping(cls, data: Any) -> DevicesConfig:
        """The devices file's parsed YAML; raises ``ConfigurationError`` naming the first bad field."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigurationError("the devices file must be a mapping with areas, floors, entities and devices")
        floors = tuple(_floor(item, f"floors[{i}]") for i, item in enumerate(_list(data, "floors")))
        _unique((f.id for f in floors), "floors")
        floor_ids = {f.id for f in floors}
        areas = tuple(_area(item, f"areas[{i}]", floor_ids) for i, item in enumerate(_list(data, "areas")))
        _unique((a.id for a in areas), "areas")
        resolve = _area_resolver(areas)
        entities = tuple(_entity(item, f"entities[{i}]", resolve) for i, item in enumerate(_list(data, "entities")))
        _unique((e.id for e in entities), "entities")
        devices = tuple(_device(item, f"devices[{i}]", resolve) for i, item in enumerate(_list(data, "devices")))
        _unique((d.id for d in devices), "devices")
        config = cls(areas=areas, floors=floors, entities=entities, devices=devices)
        if len(config._by_state_topic) != len(entities):
            raise ConfigurationError("entities: two entities share a state topic")
        return config

    def entity(self, entity_id: str) -> Entity | None:
        return self._by_id.get(entity_id)

    def area(self, area_id: str) -> Area | None:
        return next((a for a in self.areas if a.id == area_id), None)

    def area_named(self, name: str) -> Area | None:
        """The area whose id, name or alias is ``name`` (case and width folded)."""
        folded = _fold(name)
        return next((a for a in self.areas if folded in {_fold(n) for n in (a.id, *a.names)}), None)

    def entity_for_state_topic(self, topic: str) -> Entity | None:
        """The entity reporting its state on ``topic``, or None."""
        return self._by_state_topic.get(topic)

    def area_of_device(self, device_id: str) -> str | None:
        """The area id of the request-sending device ``device_id``, or None when unknown or placed nowhere."""
        return next((d.area for d in self.devices if d.id == device_id), None)

    def device_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.devices)


@dataclass(frozen=True, slots=True)
class DeviceCommand:
    """One command for one entity, as the ``reply.mqtt`` deliverer publishes it (QoS 1, never retained)."""

    #: The entity's command topic.
    topic: str
    #: ``{"service", "entity_id", "data", "message_id", "issued_at", "expires_at"}``; a device drops a command
    #: whose ``expires_at`` (Unix seconds) has passed.
    payload: dict[str, Any]


def device_commands(
    actions: Iterable[Mapping[str, Any]],
    devices: DevicesConfig,
    message_id: str,
    issued_at: float,
    ttl_seconds: float,
) -> list[DeviceCommand]:
    """One command per target entity of each intent action that has a service (questions have none)."""
    commands: list[DeviceCommand] = []
    for action in actions:
        service = action.get("service")
        if action.get("type") != "intent" or not isinstance(service, str) or not service:
            continue
        data = action.get("data")
        for target in action.get("targets") or ():
            entity = devices.entity(str(target))
            if entity is None:
                # The devices file changed between understanding and delivery: nothing to address.
                logger.warning("no entity %s in the devices file; its command is dropped", target)
                continue
            payload = {
                "service": service,
                "entity_id": entity.id,
                "data": dict(data) if isinstance(data, Mapping) else {},
                "message_id": message_id,
                "issued_at": issued_at,
                "expires_at": issued_at + ttl_seconds,
            }
            commands.append(DeviceCommand(entity.command_topic, payload))
    return commands


def checked_request_context(value: Any) -> dict[str, str]:
    """A request's ``context`` as the edges accept it (HTTP ``POST /api/messages``, MQTT request payloads): an
    object of at most 8 plain keys with strings of at most 100 characters; None means none. Raises ``ValueError``
    saying what is wrong (the edge answers 400, or on the device's error topic)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError('\'context\' must be an object of strings such as {"area": "卧室"}')
    if len(value) > MAX_CONTEXT_ITEMS:
        raise ValueError(f"'context' may hold at most {MAX_CONTEXT_ITEMS} keys")
    checked: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(key, str) or not CONTEXT_KEY.match(key):
            raise ValueError("'context' keys must be 1-32 letters, digits or _")
        if not isinstance(item, str) or len(item) > MAX_CONTEXT_VALUE or "\x00" in item:
            raise ValueError(f"'context.{key}' must be a string of at most {MAX_CONTEXT_VALUE} characters")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"'context.{key}' must be valid text") from None
        checked[key] = item.strip()
    return checked


def _list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigurationError(f"{key}: must be a list")
    return value


def _mapping(item: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise ConfigurationError(f"{where}: must be a mapping")
    return item


def _text(item: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = item.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ConfigurationError(f"{where}.{key}: missing")
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ConfigurationError(f"{where}.{key}: must be a string")
    return str(value).strip()


def _id(item: Mapping[str, Any], where: str) -> str:
    value = _text(item, "id", where)
    assert value is not None
    if not _PLAIN_ID.match(value):
        raise ConfigurationError(f"{where}.id: {value!r} may not hold '/', '+', '#' or start with a space")
    return value


def _aliases(item: Mapping[str, Any], where: str) -> tuple[str, ...]:
    value = item.get("aliases")
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigurationError(f"{where}.aliases: must be a list of strings")
    return tuple(v.strip() for v in value if v.strip())


def _unique(ids: Iterable[str], where: str) -> None:
    seen: set[str] = set()
    for value in ids:
        if value in seen:
            raise ConfigurationError(f"{where}: id {value!r} appears twice")
        seen.add(value)


def _floor(item: Any, where: str) -> Floor:
    item = _mapping(item, where)
    floor_id = _id(item, where)
    return Floor(id=floor_id, name=_text(item, "name", where) or floor_id, aliases=_aliases(item, where))


def _area(item: Any, where: str, floors: set[str]) -> Area:
    item = _mapping(item, where)
    floor = _text(item, "floor", where, required=False)
    if floor is not None and floor not in floors:
        raise ConfigurationError(f"{where}.floor: unknown floor {floor!r}")
    area_id = _id(item, where)
    name = _text(item, "name", where) or area_id
    return Area(id=area_id, name=name, aliases=_aliases(item, where), floor=floor)


def _area_resolver(areas: tuple[Area, ...]) -> dict[str, str]:
    # Ids first, then names: an entity or device may name its area either way (Home Assistant's files use ids).
    resolve = {a.name: a.id for a in areas}
    resolve.update({a.id: a.id for a in areas})
    return resolve


def _entity(item: Any, where: str, areas: Mapping[str, str]) -> Entity:
    item = _mapping(item, where)
    entity_id = _text(item, "id", where) or ""
    if not _ENTITY_ID.match(entity_id):
        raise ConfigurationError(f"{where}.id: {entity_id!r} is not <domain>.<object_id>")
    name = _text(item, "name", where, required=False) or entity_id.split(".", 1)[1].replace("_", " ")
    area = _text(item, "area", where, required=False)
    if area is not None:
        if area not in areas:
            raise ConfigurationError(f"{where}.area: unknown area {area!r}")
        area = areas[area]
    attributes = item.get("attributes") or {}
    if not isinstance(attributes, Mapping) or not all(isinstance(k, str) for k in attributes):
        raise ConfigurationError(f"{where}.attributes: must be a mapping")
    for key in ("command_topic", "state_topic"):
        topic = attributes.get(key)
        if topic is not None and (not isinstance(topic, str) or not topic or "+" in topic or "#" in topic):
            raise ConfigurationError(f"{where}.attributes.{key}: must be a topic without wildcards")
    return Entity(
        id=entity_id,
        name=name,
        aliases=_aliases(item, where),
        area=area,
        state=_state(item.get("state"), where),
        attributes=dict(attributes),
    )


def _state(value: Any, where: str) -> str | None:
    # Home Assistant's fixtures may give {in: "what is said", out: "the state"}; the state is what is kept.
    if isinstance(value, Mapping):
        value = value.get("out")
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"  # YAML 1.1 reads a bare on/off as a boolean
    if not isinstance(value, str | int | float):
        raise ConfigurationError(f"{where}.state: must be a string or a number")
    return str(value)


def _device(item: Any, where: str, areas: Mapping[str, str]) -> Device:
    item = _mapping(item, where)
    area = _text(item, "area", where, required=False)
    if area is not None:
        if area not in areas:
            raise ConfigurationError(f"{where}.area: unknown area {area!r}")
        area = areas[area]
    return Device(id=_id(item, where), area=area)
