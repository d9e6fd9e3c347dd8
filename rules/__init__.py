"""Rules: pure evaluation of readings and clock ticks into alarm transitions and commands.

Nothing here yet: the rule kinds and the alarm lifecycle arrive with the rules issue.
"""
