"""The agent loop's work-in-progress hook: asked after every step that may have changed the tree
(never after a step of only reads or plan marks), after the green hook, and before a ``finish``
ends the loop."""

from __future__ import annotations

from pathlib import Path

from tests.unit.test_agent_loop import PLAN, agent, call, repo, script

__all__ = ["repo"]  # the fixture, used by name


def test_the_change_hook_follows_steps_that_may_change_the_tree(repo: Path) -> None:
    seen: list[tuple[str, int]] = []
    model = script(PLAN, call("read_file", path="calc.py"), call("list_files"),          # 1, 2
                   call("edit_file", path="calc.py", search="return a - b",
                        replace="return a + b"),                                           # 3
                   call("mark_done", items=[1]), call("run_command", command="true"),     # 4, 5
                   call("run_tests"),                                                      # 6
                   {"tool_calls": [{"name": "edit_file", "input": {
                       "path": "NOTES.md", "search": "", "replace": "done\n"}},
                       {"name": "finish", "input": {"summary": "ok"}}]})                   # 7
    loop = agent(model, repo, on_green=lambda: seen.append(("green", loop.result.steps)),
                 on_change=lambda: seen.append(("change", loop.result.steps)))
    result = loop.run("fix add")
    assert result.finished and (repo / "NOTES.md").read_text() == "done\n"
    assert seen == [("change", 3), ("change", 5), ("green", 6), ("change", 6), ("change", 7)]
