"""Registry of generative methods and one module per family of methods."""
