"""A toy third-party method, loaded by the tests as ``--plugin toy_plugin``.

It is the example of the README's "Adding a method" section, kept here so
that the tests check that the example works.
"""

from dataclasses import dataclass

from methods.base import FitReport, Method, Params, SampleResult, standard_normal
from methods.registry import register_method


@dataclass(frozen=True)
class DiagonalParams(Params):
    scale: float = 1.0  # multiplies the fitted standard deviations


@register_method("toy-diagonal")
class DiagonalGaussian(Method):
    """An independent Gaussian per feature, fitted by maximum likelihood."""

    description = "toy: independent Gaussian per feature (the README's example)"
    Params = DiagonalParams

    def _fit(self, train, val, config, seed, device):
        self.mean_ = train.mean(dim=0).cpu()
        self.std_ = train.std(dim=0, correction=0).cpu()
        return FitReport(method=self.name, seed=seed)

    def _sample(self, n, steps, seed, device):
        z = standard_normal(n, self.data_shape_, seed, device)  # row i depends on (seed, i)
        x = self.mean_.to(device) + self.params.scale * self.std_.to(device) * z
        return SampleResult(x, nfe=0)

    def _state(self):
        return {"mean": self.mean_, "std": self.std_}

    def _restore(self, state, device):
        self.mean_, self.std_ = state["mean"], state["std"]
