"""Built-in plugins: each folder here is one plugin."""
