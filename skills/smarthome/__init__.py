"""The smart home: requests about the devices file's entities, understood with Home Assistant's templates."""

from skills.smarthome.skill import SmartHomeSkill

__all__ = ["SmartHomeSkill"]
