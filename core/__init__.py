"""Types shared by drivers, rules and the gateway: the vocabulary every package speaks."""
