"""The metric suite: registered metrics over point sets, distances, features and measures.

Importing the package registers every built-in metric in
:data:`metrics.base.METRICS`; third-party metrics come from the
``bench.metrics`` entry-point group or a ``--plugin`` module.
"""

from metrics import (anatomy, distribution, diversity, features, privacy,  # noqa: F401
                     volumetric)
