"""The gates a change passes: command policy, approval, secret scan, budget, test gate."""
