"""Skills: the plugin API (``skills.base.BaseSkill``), the registry and the built-in skills."""
