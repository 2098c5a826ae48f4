"""What every backend sends the model: the system prompt, the session's recent turns and the message, as chat
messages (``openai``) or one prompt string (``tfserving``, ``onnx``)."""

from __future__ import annotations

from pipeline.generation import ChatTurn, GenerationRequest
from pipeline.model_config import ModelConfig

#: Appended to the system prompt so the answer comes in the message's language even when the model is unsure.
LANGUAGE_HINTS = {"zh": "请用中文回答。", "en": "Answer in English."}


def system_text(request: GenerationRequest, config: ModelConfig) -> str:
    """The request's system prompt (the configured one when it has none), with the reply language stated."""
    base = (request.system_prompt or config.system_prompt).strip()
    hint = LANGUAGE_HINTS.get(request.language, "")
    return f"{base}\n{hint}".strip() if hint else base


def recent_turns(request: GenerationRequest, config: ModelConfig) -> tuple[ChatTurn, ...]:
    """The last ``history_turns`` turns of the request's history, oldest first."""
    limit = config.history_turns
    return request.history[-limit:] if limit > 0 else ()


def chat_messages(request: GenerationRequest, config: ModelConfig) -> list[dict[str, str]]:
    """OpenAI chat messages: system (when there is one), then each recent turn as user and assistant, then the
    message."""
    system = system_text(request, config)
    messages = [{"role": "system", "content": system}] if system else []
    for turn in recent_turns(request, config):
        messages.append({"role": "user", "content": turn.user})
        messages.append({"role": "assistant", "content": turn.assistant})
    messages.append({"role": "user", "content": request.text})
    return messages


def prompt_text(request: GenerationRequest, config: ModelConfig) -> str:
    """The conversation as one string the model continues with the assistant's answer.

    ``chatml`` is the ChatML layout Qwen and many small chat models are trained on::

        <|im_start|>system\\n{system}<|im_end|>\\n<|im_start|>user\\n{text}<|im_end|>\\n<|im_start|>assistant\\n

    ``plain`` is ``{system}\\n\\nUser: {text}\\nAssistant:`` for models trained on no chat markup.
    """
    messages = chat_messages(request, config)
    if config.prompt_format == "plain":
        names = {"system": "", "user": "User: ", "assistant": "Assistant: "}
        # The system prompt, when there is one, is its own paragraph.
        lines = [names[m["role"]] + m["content"] + ("\n" if m["role"] == "system" else "") for m in messages]
        return "\n".join(lines) + "\nAssistant:"
    parts = [f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages]
    return "".join(parts) + "<|im_start|>assistant\n"
