"""Domain rules that the API, the workers and the operator commands share: one module per rule."""
