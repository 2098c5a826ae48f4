"""The dispatch stage's decision: which skill answers, slot filling, and interruption recovery."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from pipeline.dialogue import DialogueState, PendingTask, Turn
from pipeline.envelope import Envelope, Reply
from pipeline.errors import SkillError
from pipeline.intents import NONE_LABEL, IntentGuess
from pipeline.language import detect_language, normalize
from pipeline.logsafe import trace_without_messages
from pipeline.slots import LOCATION, extract_slots, location_answer
from skills.base import BaseSkill, SkillResult
from skills.registry import SkillRegistry

logger = logging.getLogger(__name__)

#: Runs a skill with the stage's safeguards (time limit); raises ``SkillError`` on failure.
SkillRunner = Callable[[BaseSkill, dict[str, Any]], "str | SkillResult"]
#: The intent classifier's top guess for a message, None when it has no model (yet).
Classify = Callable[[str], IntentGuess | None]

CANCEL_WORDS = frozenset({"取消", "算了", "不用了", "cancel", "never mind", "nevermind", "forget it"})

MESSAGES = {
    "zh": {
        "apology": "抱歉，处理您的请求时出了点问题，请稍后再试。",
        "cancelled": "好的，已取消。",
        "resume": "我们接着刚才的话题：{question}",
    },
    "en": {
        "apology": "Sorry, something went wrong while handling that. Please try again.",
        "cancelled": "OK, cancelled.",
        "resume": "Back to what we were doing: {question}",
    },
}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What dispatch decided: the new state, and the reply, or None to hand over to inference."""

    state: DialogueState
    reply: Reply | None
    #: The skill asked to hand the conversation to a person (``SkillResult.handoff``).
    handoff: bool = False


def dispatch(
    envelope: Envelope,
    state: DialogueState,
    registry: SkillRegistry,
    run_skill: SkillRunner,
    classify: Classify | None = None,
    threshold: float = 0.5,
) -> Outcome:
    """Answer ``envelope`` given the session's ``state``; pure apart from what the skills do.

    A trigger match wins. With none, and no question open, ``classify``'s top intent selects its skill when its
    confidence is at least ``threshold``; otherwise the reply is None and inference answers. Skills that do not
    serve the envelope's roles (``BaseSkill.serves``) are left out of all of it.
    """
    text = envelope.text.strip()
    language = detect_language(text, envelope.language or state.language)
    # Only the skills the sender may use take part: a visitor's "unlock the front door" finds no skill (nor does
    # the classifier, nor an open question of one), and goes to inference as if there were none.
    registry = registry.serving(envelope.roles)
    # Questions of skills that are gone (an admin deleted them) are never offered again.
    interrupted = tuple(task for task in state.interrupted if task.skill in registry)
    state = replace(state, language=language, last_seq=max(state.last_seq, envelope.seq), interrupted=interrupted)
    matched = registry.match(text)
    pending = state.pending

    if pending and normalize(text) in CANCEL_WORDS:
        return _answer(envelope, replace(state, pending=None), MESSAGES[language]["cancelled"], "cancel")

    if pending and pending.skill not in registry:
        pending = None  # the skill that asked is gone (deleted); treat the message as new
        state = replace(state, pending=None)

    if pending and (matched is None or matched.name == pending.skill):
        skill = registry.get(pending.skill)
        if skill is not None:
            if matched is None and pending.slot:
                # The message answers the open question: it fills the slot.
                slots = {**pending.slots, pending.slot: text}
                return _run(envelope, replace(state, pending=None), skill, run_skill, language, slots, pending.slot)
            return _run(envelope, replace(state, pending=None), skill, run_skill, language, dict(pending.slots))
        pending = None  # the skill that asked is gone (deleted); treat the message as new
        state = replace(state, pending=None)

    if pending:
        # The user changed the subject: serve the new request, offer the old one again afterwards.
        state = replace(state, pending=None, interrupted=(*state.interrupted, pending))
    if matched is None and classify is not None:
        # Only here, with no question open: a bare answer ("上海") must fill its slot, not be classified away.
        matched = _classified(envelope, text, registry, classify, threshold)
    if matched is None:
        return Outcome(state, None)
    return _run(envelope, state, matched, run_skill, language, {})


def _classified(
    envelope: Envelope, text: str, registry: SkillRegistry, classify: Classify, threshold: float
) -> BaseSkill | None:
    """The skill the classifier's top intent names, if it is sure enough and the skill is still registered."""
    try:
        guess = classify(text)
    except Exception as exc:
        # A broken model costs the message its classification, not its answer.
        logger.error("intent classifier failed on message %s: %s", envelope.message_id, trace_without_messages(exc))
        return None
    if guess is None:
        return None
    meant = guess.skill != NONE_LABEL and guess.confidence >= threshold
    skill = registry.get(guess.skill) if meant else None
    logger.debug(
        "message %s: intent %s at %.2f (threshold %.2f) -> %s",
        envelope.message_id, guess.skill, guess.confidence, threshold, skill.name if skill else "inference",
    )  # fmt: skip
    return skill


def _run(
    envelope: Envelope,
    state: DialogueState,
    skill: BaseSkill,
    run_skill: SkillRunner,
    language: str,
    slots: dict[str, str],
    answering: str | None = None,
) -> Outcome:
    message = envelope.text.strip()
    # Slots the message itself names (its place, its day) beat ones carried from earlier turns; the answer to the
    # open question beats both, cleaned when it is a place ("上海吧" → "上海").
    slots = dict(slots)
    answer = slots.pop(answering, None) if answering else None
    slots |= extract_slots(message, skill.triggers)
    if answering and answer is not None:
        slots[answering] = location_answer(answer, skill.triggers) if answering == LOCATION else answer
    context: dict[str, Any] = {
        "message": message,
        "language": language,
        "session_id": envelope.session_id,
        "user_id": envelope.user_id,
        "roles": list(envelope.roles),
        "channel": envelope.channel,
        "message_id": envelope.message_id,
        "slots": slots,
        "answering": answering,
        "history": [{"user": t.user, "assistant": t.assistant, "skill": t.skill} for t in state.history],
        # Where the request was said (the area of the device that heard it, or the one the request names).
        "area": envelope.context.get("area"),
    }
    # Slots are top-level keys too, as skills read them (context.get("location", "北京")); never over a key above.
    for name, value in slots.items():
        context.setdefault(name, value)
    try:
        result = run_skill(skill, context)
        if not isinstance(result, str | SkillResult):
            raise SkillError(f"skill {skill.name!r} returned {type(result).__name__}, not str or SkillResult")
    except Exception as exc:
        # Not the exception's message: a skill may put the user's text in it.
        logger.error("skill %s failed on message %s: %s", skill.name, envelope.message_id, trace_without_messages(exc))
        code = exc.code if isinstance(exc, SkillError) else SkillError.code
        return _answer(envelope, state, MESSAGES[language]["apology"], skill.name, error=code)

    if isinstance(result, str):
        result = SkillResult(text=result)
    if result.ask:
        # What this turn knew ("明天订酒店": the day) stays while the question is open, under the skill's own slots.
        task = PendingTask(skill=skill.name, question=result.ask, slot=result.slot, slots={**slots, **result.slots})
        return _answer(envelope, replace(state, pending=task), result.text, skill.name, True, result.actions)
    text = result.text
    if result.handoff:
        # Handed to a person: no interrupted question is offered again now; the state keeps it for later.
        return replace(_answer(envelope, state, text, skill.name, False, result.actions), handoff=True)
    if state.interrupted:
        resumed = state.interrupted[-1]
        state = replace(state, pending=resumed, interrupted=state.interrupted[:-1])
        text = f"{text}\n{MESSAGES[language]['resume'].format(question=resumed.question)}"
        return _answer(envelope, state, text, skill.name, True, result.actions)
    return _answer(envelope, state, text, skill.name, False, result.actions)


def _answer(
    envelope: Envelope,
    state: DialogueState,
    text: str,
    skill: str,
    expects_reply: bool = False,
    actions: tuple[dict[str, Any], ...] = (),
    error: str | None = None,
) -> Outcome:
    reply = Reply.answering(
        envelope,
        text,
        skill=skill,
        expects_reply=expects_reply,
        actions=tuple(actions),
        error=error,
        language=state.language,
    )
    return Outcome(state.remember(Turn(envelope.text, text, skill)), reply)
