"""The agent: the plan-act-test loop, its tools, search/replace edits and the failure log."""
