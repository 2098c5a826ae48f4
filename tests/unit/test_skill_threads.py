"""Skills run on pooled threads with a time limit: reused when they return, given up on when they hang."""

from __future__ import annotations

import threading

import pytest

from pipeline.errors import SkillTimeout
from tasks.skillthreads import SkillThreads


def test_the_result_comes_back_and_the_thread_is_reused() -> None:
    run_with_timeout = SkillThreads().run
    first = run_with_timeout(threading.get_ident, 5, "ident")
    # The thread puts itself back right after setting the result; give it that moment.
    threading.Event().wait(0.05)
    assert run_with_timeout(threading.get_ident, 5, "ident") == first
    assert first != threading.get_ident()


def test_an_exception_of_the_skill_reaches_the_caller() -> None:
    run_with_timeout = SkillThreads().run

    def fail() -> None:
        raise ValueError("坏了")

    with pytest.raises(ValueError, match="坏了"):
        run_with_timeout(fail, 5, "fail")


def test_a_hanging_call_times_out_and_its_thread_serves_no_one_else_meanwhile() -> None:
    run_with_timeout = SkillThreads().run
    release = threading.Event()
    hung: list[int] = []

    def hang() -> None:
        hung.append(threading.get_ident())
        release.wait(10)

    try:
        with pytest.raises(SkillTimeout, match="'hang'"):
            run_with_timeout(hang, 0.05, "hang")
        assert [run_with_timeout(threading.get_ident, 5, "next") for _ in range(5)].count(hung[0]) == 0
    finally:
        release.set()
