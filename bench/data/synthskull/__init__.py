"""synthskull: procedural craniofacial skeletons built on the fsaverage inner skull."""

from bench.data.synthskull.anatomy import CLASS_NAMES, CLASS_PRIOR, SkullParameters, SynthskullPrior
from bench.data.synthskull.generator import (LANDMARK_NAMES, Subject, generate_subject,
                                             generate_subjects, make_dataset)

__all__ = ["CLASS_NAMES", "CLASS_PRIOR", "LANDMARK_NAMES", "SkullParameters", "Subject",
           "SynthskullPrior", "generate_subject", "generate_subjects", "make_dataset"]
