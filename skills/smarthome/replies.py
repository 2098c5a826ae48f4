"""What the smart-home skill says, in Chinese (full-width punctuation) and English."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.devices import Entity
from pipeline.language import is_cjk

#: What a command did, by service: ``{names}`` and the data's values.
DONE = {
    "zh": {
        "turn_on": "{names}已打开。", "turn_off": "{names}已关闭。",
        "light.brightness": "已把{names}的亮度调到{brightness_pct}%。", "light.color": "已把{names}调成{color}。",
        "light.color_temp": "已把{names}的色温调到{color_temp_kelvin}K。",
        "cover.open_cover": "{names}已打开。", "cover.close_cover": "{names}已关上。",
        "valve.open_valve": "{names}已打开。", "valve.close_valve": "{names}已关上。",
        "lock.lock": "{names}已锁上。", "lock.unlock": "{names}已解锁。",
        "scene.turn_on": "已启用{names}。", "script.turn_on": "已运行{names}。",
        "climate.set_temperature": "已把{names}调到{temperature}度。",
        "cover.set_cover_position": "已把{names}开到{position}%。",
        "valve.set_valve_position": "已把{names}开到{position}%。",
        "media_player.media_pause": "{names}已暂停。", "media_player.media_play": "{names}继续播放。",
        "media_player.media_next_track": "{names}已切到下一首。",
        "media_player.media_previous_track": "{names}已切到上一首。",
        "media_player.volume_set": "已把{names}的音量调到{volume}%。",
        "media_player.volume_mute": "{names}已静音。", "media_player.volume_unmute": "{names}已取消静音。",
        "vacuum.start": "{names}开始清扫。", "vacuum.return_to_base": "{names}正在返回充电座。",
        "fan.set_percentage": "已把{names}的风速调到{percentage}%。",
    },
    "en": {
        "turn_on": "Turned on {names}.", "turn_off": "Turned off {names}.",
        "light.brightness": "Set {names} to {brightness_pct}% brightness.", "light.color": "Turned {names} {color}.",
        "light.color_temp": "Set {names} to {color_temp_kelvin} K.",
        "cover.open_cover": "Opened {names}.", "cover.close_cover": "Closed {names}.",
        "valve.open_valve": "Opened {names}.", "valve.close_valve": "Closed {names}.",
        "lock.lock": "Locked {names}.", "lock.unlock": "Unlocked {names}.",
        "scene.turn_on": "Activated {names}.", "script.turn_on": "Started {names}.",
        "climate.set_temperature": "Set {names} to {temperature} degrees.",
        "cover.set_cover_position": "Set {names} to {position}% open.",
        "valve.set_valve_position": "Set {names} to {position}% open.",
        "media_player.media_pause": "Paused {names}.", "media_player.media_play": "Resumed {names}.",
        "media_player.media_next_track": "Skipped to the next track on {names}.",
        "media_player.media_previous_track": "Went back to the previous track on {names}.",
        "media_player.volume_set": "Set the volume of {names} to {volume}%.",
        "media_player.volume_mute": "Muted {names}.", "media_player.volume_unmute": "Unmuted {names}.",
        "vacuum.start": "Started {names}.", "vacuum.return_to_base": "Sent {names} back to the dock.",
        "fan.set_percentage": "Set {names} to {percentage}% speed.",
    },
}  # fmt: skip

STATES = {
    "zh": {
        "on": "开着", "off": "关着", "open": "开着", "closed": "关着", "opening": "正在打开", "closing": "正在关闭",
        "locked": "锁着", "unlocked": "没锁", "locking": "正在上锁", "unlocking": "正在解锁", "jammed": "卡住了",
        "playing": "正在播放", "paused": "暂停了", "idle": "空闲", "standby": "待机", "docked": "在充电座上",
        "cleaning": "正在清扫", "returning": "正在返回充电座", "heat": "在制热", "cool": "在制冷",
        "auto": "是自动模式", "dry": "在除湿", "fan_only": "在送风", "unavailable": "不可用",
    },
    "en": {"heat": "heating", "cool": "cooling", "fan_only": "on fan only", "auto": "in auto mode"},
}  # fmt: skip

TEXTS = {
    "zh": {
        "which": "您指的是哪一个：{options}？",
        "not_found_name": "没有找到“{name}”。",
        "not_found_area": "{area}没有能这样操作的设备。",
        "not_found": "家里没有能这样操作的设备。",
        "no_place": "家里没有叫“{place}”的地方。",
        "cannot": "{names}不支持这个操作。",
        "unknown_state": "还不知道{names}现在的状态。",
        "state": "{name}{state}",
        "value": "{name}是{value}",
        "temperature": "{place}现在{value}",
        "yes": "是的，",
        "no": "不，",
        "sep": "，",
        "end": "。",
        "join": "、",
        "or": "还是",
        "choice_again": "没听明白您指的是哪一个。{question}",
    },
    "en": {
        "which": "Which one do you mean: {options}?",
        "not_found_name": "I couldn't find “{name}”.",
        "not_found_area": "There is nothing in the {area} I can do that with.",
        "not_found": "There is no device I can do that with.",
        "no_place": "There is no area called “{place}” in the home.",
        "cannot": "That can't be done with {names}.",
        "unknown_state": "I don't know the state of {names} yet.",
        "state": "{name} is {state}",
        "value": "{name} is {value}",
        "temperature": "It is {value} in {place}",
        "yes": "Yes, ",
        "no": "No, ",
        "sep": "; ",
        "end": ".",
        "join": ", ",
        "or": "or",
        "choice_again": "Sorry, I didn't catch which one. {question}",
    },
}


def display_name(entity: Entity, language: str, said: object = None) -> str:
    """The entity's name in the reply's language: the name the request used when it is one of the entity's, else
    its first name in Chinese for ``zh``, in Latin letters for ``en`` (with "the"), else its name."""
    chinese = [n for n in entity.names if any(is_cjk(c) for c in n)]
    latin = [n for n in entity.names if not any(is_cjk(c) for c in n)]
    if isinstance(said, str) and said in (chinese if language == "zh" else latin):
        chinese, latin = [said], [said]
    if language == "zh":
        return chinese[0] if chinese else entity.name
    if not latin:
        return entity.name
    return with_article(latin[0])


def with_article(name: str) -> str:
    """ "the bedroom lamp", "the TV"; a name that has its own ("my phone") keeps it."""
    return name if name.lower().startswith(("the ", "my ", "our ")) else f"the {name}"


def area_display(names: Sequence[str], language: str) -> str:
    chinese = [n for n in names if any(is_cjk(c) for c in n)]
    latin = [n for n in names if not any(is_cjk(c) for c in n)]
    if language == "zh":
        return (chinese or list(names))[0]
    return (latin or list(names))[0]


def join(items: Sequence[str], language: str, last: str | None = None) -> str:
    """``a、b`` / ``a, b and c``; ``last`` replaces the final joining word (``还是``, ``or``)."""
    if len(items) <= 1:
        return "".join(items)
    if language == "zh":
        if last:
            return "、".join(items[:-1]) + last + items[-1]
        return "、".join(items)
    return ", ".join(items[:-1]) + f" {last or 'and'} " + items[-1]


def capitalized(text: str) -> str:
    return text[:1].upper() + text[1:]


def number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def done(service: str, names: str, data: Mapping[str, Any], said: Mapping[str, str], language: str) -> str:
    """The sentence for one service call."""
    table = DONE[language]
    verb = service.partition(".")[2]
    if service == "light.turn_on" and "brightness_pct" in data:
        key = "light.brightness"
    elif service == "light.turn_on" and "color_name" in data:
        key = "light.color"
    elif service == "light.turn_on" and "color_temp_kelvin" in data:
        key = "light.color_temp"
    elif service == "media_player.volume_mute" and data.get("is_volume_muted") is False:
        key = "media_player.volume_unmute"
    elif service in table:
        key = service
    else:
        key = verb if verb in table else "turn_on"
    values = {k: number(v) for k, v in data.items()}
    values["color"] = said.get("color", str(data.get("color_name", "")))
    if "volume_level" in data:
        values["volume"] = number(round(float(data["volume_level"]) * 100))
    text = table[key].format(names=names, **values)
    return capitalized(text) if language == "en" else text


def state_word(state: str, language: str) -> str:
    return STATES[language].get(state, state)
