"""Flow matching methods, registered on import: ``otfm``, ``cfm``, ``sbcfm`` and ``rf2``.

Each method is assembled from small parts named after the maths:

- coupling.py: ``couple(x_0, x_1, generator) -> Pairs`` (independent, exact OT, Sinkhorn);
- path.py: ``GaussianPath.sample(x_0, x_1, t, eps) -> PathSample(x_t, t, velocity)``;
- loss.py: the conditional flow matching loss for the shared training loop;
- solver.py: the ODE integration from noise to data (torchdiffeq), NFE counted;
- methods.py and reflow.py: the registered methods.
"""

from methods.flow_matching.coupling import (Coupling, ExactOTCoupling, IndependentCoupling, Pairs,
                                            SinkhornCoupling, squared_distances)
from methods.flow_matching.loss import CouplingStats, FlowMatchingLoss
from methods.flow_matching.methods import (CFMParams, ConditionalFlowMatching,
                                           FlowMatchingMethod, FlowParams, OTFlowMatching,
                                           SBCFMParams, SBFlowMatching)
from methods.flow_matching.path import (BrownianBridgePath, ConstantNoisePath, GaussianPath,
                                        PathSample)
from methods.flow_matching.reflow import Reflow, ReflowParams
from methods.flow_matching.solver import (STAGES, FlowSolution, VelocityField, check_solver,
                                          integrate, straightness)

__all__ = [
    "STAGES", "BrownianBridgePath", "CFMParams", "ConditionalFlowMatching", "ConstantNoisePath",
    "Coupling", "CouplingStats", "ExactOTCoupling", "FlowMatchingLoss", "FlowMatchingMethod",
    "FlowParams", "FlowSolution", "GaussianPath", "IndependentCoupling", "OTFlowMatching",
    "Pairs", "PathSample", "Reflow", "ReflowParams", "SBCFMParams", "SBFlowMatching",
    "SinkhornCoupling", "VelocityField", "check_solver", "integrate", "squared_distances",
    "straightness",
]
