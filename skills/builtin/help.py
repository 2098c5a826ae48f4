"""The built-in help skill: lists what every registered skill does, in the user's language."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipeline.language import detect_language, is_cjk
from skills.base import HOUSEHOLD_ROLES, BaseSkill

#: Everyday ways of asking what the assistant can do and how to use it; the intent classifier learns from them.
EXAMPLES = (
    # Chinese
    "你能帮我干什么", "你可以做些什么", "你有哪些本事", "你会干啥", "你能干嘛", "你都能做点啥",
    "我该怎么用你", "怎么使用这个助手", "你怎么用", "使用说明", "给我介绍一下你自己", "你是干什么的",
    "你有什么用", "我能问你什么", "你支持哪些操作", "有哪些命令", "教我怎么用", "你的技能有哪些",
    "你擅长什么", "我不知道该问什么", "列出你的能力", "这个东西怎么玩", "新手怎么上手", "有什么可以问你的",
    "你能回答哪些问题", "菜单",
    # English
    "what are you able to do", "what can i ask you", "what are your skills", "what do you do",
    "how does this work", "how should i use this", "show me what you can do", "what are my options",
    "list your commands", "what commands do you know", "what features do you have", "i need some assistance",
    "what are you good at", "tell me about yourself", "what kind of things can you help with",
    "how can you help me", "what questions can you answer", "i don't know what to ask",
    "give me some instructions", "where do i start", "can you help me", "what is this assistant for",
    "user guide", "menu", "what are your capabilities", "getting started",
)  # fmt: skip


class HelpSkill(BaseSkill):
    """Lists the skills; reads them at call time, so skills registered later show up too. Only the ones the asker
    may use: a website's visitor hears nothing of the household's skills."""

    visitors = True

    def __init__(self, registry_view: Callable[[], list[dict[str, Any]]]) -> None:
        super().__init__(
            name="help",
            description="列出我能做的事 / list what I can do",
            triggers=["帮助", "你能做什么", "你会什么", "功能", "help", "what can you do"],
            examples=EXAMPLES,
        )
        self._registry_view = registry_view

    def execute(self, context: dict[str, Any]) -> str:
        message = str(context.get("message") or "")
        zh = (context.get("language") or detect_language(message)) == "zh"
        lines = []
        roles = context.get("roles")
        for skill in self._registry_view():
            if roles is not None and not any(role in (skill.get("roles") or HOUSEHOLD_ROLES) for role in roles):
                continue
            name = str(skill.get("name", ""))
            description = localized(str(skill.get("description") or ""), zh)
            example = _example(skill.get("triggers") or [], zh)
            if zh:
                line = f"- {name}：{description}" if description else f"- {name}"
                lines.append(f"{line}（例如“{example}”）" if example else line)
            else:
                line = f"- {name}: {description}" if description else f"- {name}"
                lines.append(f'{line} (try "{example}")' if example else line)
        if not lines:
            return "现在还没有可用的技能。" if zh else "No skills are available right now."
        header = "我可以帮你做这些事：" if zh else "Here is what I can do:"
        return "\n".join([header, *lines])


def localized(description: str, zh: bool) -> str:
    """The part of a bilingual "中文 / English" description in the wanted language (all of it if single)."""
    parts = [p.strip() for p in description.split(" / ") if p.strip()]
    if len(parts) < 2:
        return description.strip()
    wanted = [p for p in parts if any(is_cjk(ch) for ch in p) == zh]
    return wanted[0] if wanted else parts[0]


def _example(triggers: list[Any], zh: bool) -> str:
    words = [str(t) for t in triggers if str(t).strip()]
    wanted = [t for t in words if any(is_cjk(ch) for ch in t) == zh]
    return (wanted or words or [""])[0]
