"""Loading plugin skills from a folder of ``*.py`` files and from entry points."""

from __future__ import annotations

import logging
import sys
import textwrap
from pathlib import Path

import pytest

from skills.base import BaseSkill
from skills.discovery import load_entry_point_skills, load_folder_skills

# Exactly the example users see in skills/base.py's docstring.
WEATHER_EXAMPLE = """
from skills.base import BaseSkill

class WeatherSkill(BaseSkill):
    def __init__(self):
        super().__init__(name="weather", description="获取实时天气信息", triggers=["天气", "气温"])

    def execute(self, context):
        location = context["slots"].get("location") or "北京"
        return f"{location}当前气温：25℃"
"""

TWO_SKILLS = '''
from skills.base import BaseSkill, SkillResult
from skills.builtin.clock import TimeSkill  # imported, not defined here: must not load twice


class _Helper(BaseSkill):
    """Private base: skipped."""


class Greet(BaseSkill):
    def __init__(self):
        super().__init__(name="greet", triggers=["hello"])

    def execute(self, context):
        return "hi"


class Ask(BaseSkill):
    def __init__(self):
        super().__init__(name="ask", triggers=["ask"])

    def execute(self, context):
        return SkillResult.question("Which one?", slot="which")
'''

BROKEN = """
from skills.base import BaseSkill

class Broken(BaseSkill)   # syntax error
    pass
"""

RAISING = """
from skills.base import BaseSkill

class NeedsConfig(BaseSkill):
    def __init__(self):
        raise RuntimeError("missing API key")


class Fine(BaseSkill):
    def __init__(self):
        super().__init__(name="fine", triggers=["fine"])

    def execute(self, context):
        return "ok"
"""

FAILS_ON_IMPORT = """
raise ImportError("needs a package that is not installed")
"""

EXITS = """
import sys
sys.exit(1)
"""


def write(folder: Path, name: str, source: str) -> None:
    (folder / name).write_text(textwrap.dedent(source), encoding="utf-8")


def test_folder_skills_load_and_broken_files_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "weather.py", WEATHER_EXAMPLE)
    write(tmp_path, "a_two.py", TWO_SKILLS)
    write(tmp_path, "broken.py", BROKEN)
    write(tmp_path, "raising.py", RAISING)
    write(tmp_path, "import_error.py", FAILS_ON_IMPORT)
    write(tmp_path, "exits.py", EXITS)
    write(tmp_path, "_private.py", "raise RuntimeError('never imported')")
    write(tmp_path, "notes.txt", "not python")

    with caplog.at_level(logging.ERROR, logger="skills.discovery"):
        skills = load_folder_skills(tmp_path)

    # Files in name order, classes in definition order.
    assert [s.name for s in skills] == ["greet", "ask", "fine", "weather"]
    assert all(isinstance(s, BaseSkill) for s in skills)
    weather = skills[-1]
    assert weather.match("上海天气怎么样") == 2
    assert weather.execute({"slots": {"location": "上海"}}) == "上海当前气温：25℃"
    assert weather.execute({"slots": {}}) == "北京当前气温：25℃"
    assert weather.describe()["description"] == "获取实时天气信息"

    logged = caplog.text
    assert "broken.py" in logged
    assert "NeedsConfig" in logged
    assert "import_error.py" in logged
    assert "exits.py" in logged
    assert "_private" not in logged


def test_same_file_name_in_two_folders_does_not_clash(tmp_path: Path) -> None:
    for folder, answer in [("one", "first"), ("two", "second")]:
        (tmp_path / folder).mkdir()
        write(
            tmp_path / folder,
            "skill.py",
            f"""
            from skills.base import BaseSkill

            class S(BaseSkill):
                def __init__(self):
                    super().__init__(name="s", triggers=["s"])

                def execute(self, context):
                    return "{answer}"
            """,
        )
    first = load_folder_skills(tmp_path / "one")
    second = load_folder_skills(tmp_path / "two")
    assert first[0].execute({}) == "first"
    assert second[0].execute({}) == "second"
    assert type(first[0]).__module__ != type(second[0]).__module__
    assert type(first[0]).__module__ in sys.modules


def test_missing_folder_is_empty(tmp_path: Path) -> None:
    assert load_folder_skills(tmp_path / "nope") == []


def test_entry_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real installed distribution's metadata, found on sys.path like any package's.
    package = tmp_path / "demo_skill_pkg"
    package.mkdir()
    write(
        package,
        "__init__.py",
        """
        from skills.base import BaseSkill


        class Demo(BaseSkill):
            def __init__(self):
                super().__init__(name="demo", triggers=["demo"])

            def execute(self, context):
                return "demo"


        INSTANCE = Demo()
        INSTANCE.name = "demo-instance"
        NOT_A_SKILL = object()


        class NeedsArgs(BaseSkill):
            def __init__(self, key):
                super().__init__(name="needs", triggers=["x"])
        """,
    )
    dist = tmp_path / "demo_skill_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-skill-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[assistant.skills.test]\n"
        "demo = demo_skill_pkg:Demo\n"
        "instance = demo_skill_pkg:INSTANCE\n"
        "wrong = demo_skill_pkg:NOT_A_SKILL\n"
        "needs = demo_skill_pkg:NeedsArgs\n"
        "missing = demo_skill_pkg_missing:Nothing\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))

    skills = load_entry_point_skills("assistant.skills.test")

    assert sorted(s.name for s in skills) == ["demo", "demo-instance"]
    assert load_entry_point_skills("assistant.skills.nothing-here") == []
