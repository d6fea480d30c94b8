"""Capture in, DataFrame out: norms, utilisation, probes, latent structure, similarity."""
from .correlation import spearman_ci
from .features import composition, hidden_points, own_quantity, invariant_targets, invariants, point_invariants, scalar_labels, target_table
from .latent import knn_scores, knn_summary, latent_map, subsample
from .norms import norms, participation_ratio
from .paired import mae_interval, paired_difference
from .probes import (EquivariantProbe, cv_r2, equivariant_probe_scores, equivariant_targets, probe_scores,
                     ridge_probe)
from .similarity import cka_matrix, debiased_cka, linear_cka, trained_vs_control
from .interventions import INTERVENTIONS
from .denominators import apply_checks, denominator_checks
from .seeds import across_seeds, t_interval
from .finetune import finetune
from .masking import mask_edits, mask_hooks, masked
from .recovery import LEGS, necessity, recovery, recovery_of
from .ablation import ablation
from .attribution import grad_x_activation, reachable
from .utilisation import QUANTITIES, utilisation
from .verdicts import THRESHOLD, dispensable, leg_outcomes, orders_to_drop, outcomes, verdicts

__all__ = ["across_seeds", "t_interval", "LEGS", "dispensable", "necessity", "recovery_of", "finetune", "leg_outcomes", "mask_edits", "mask_hooks", "masked", "recovery", "INTERVENTIONS", "QUANTITIES", "apply_checks", "denominator_checks", "outcomes", "THRESHOLD", "EquivariantProbe", "ablation", "cka_matrix", "debiased_cka", "knn_summary", "trained_vs_control", "cv_r2", "equivariant_probe_scores",
           "equivariant_targets", "grad_x_activation", "hidden_points", "composition", "invariant_targets", "own_quantity", "invariants",
           "knn_scores", "latent_map", "linear_cka", "mae_interval", "norms", "paired_difference", "participation_ratio", "point_invariants",
           "probe_scores", "ridge_probe", "scalar_labels", "spearman_ci", "subsample", "target_table", "reachable", "utilisation", "verdicts",
           "orders_to_drop"]
