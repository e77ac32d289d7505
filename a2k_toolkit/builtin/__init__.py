"""Built-in plugins: each module registers its components through the same hooks as third-party plugins."""
