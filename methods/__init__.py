"""Registry of generative methods and one module per family of methods.

Importing the package registers every built-in method (see
:data:`methods.registry.METHODS`); third-party methods come from the
``bench.methods`` entry-point group or a ``--plugin`` module.
"""

from methods import baselines, diffusion, flow_matching, references  # noqa: F401  (register)
