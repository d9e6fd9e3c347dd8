"""Rule kinds: one module per domain (hvac, security, energy), each rule a Rule subclass with
its `kind` name and a `Params` model whose fields describe themselves for the site file."""
