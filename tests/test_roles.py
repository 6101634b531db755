"""Role inference from tag names, and --role overrides."""
from __future__ import annotations

import pytest

from losslens.errors import InvalidParameterError
from losslens.roles import infer_role, parse_overrides

CASES = {
    "lm loss": "train_loss", "train/loss": "train_loss", "loss": "train_loss",
    "trl": "train_loss", "train_loss": "train_loss", "train/CE loss": "train_loss",
    "train/CrossEntropyLoss": "train_loss", "G_GAN": "other", "G_L1": "train_loss", "G_2_L1": "train_loss", "G_A": "other",
    "num zeros": "other",
    "D_real": "other", "D_fake": "other", "D_A": "other", "cycle_A": "train_loss",
    "HellaSwag": "val_acc", "eval": "val_acc",
    "eval_loss": "val_loss", "val loss": "val_loss", "valid/c4_loss": "val_loss",
    "lm loss validation": "val_loss", "tel": "val_loss", "eval/loss": "val_loss",
    "valid_loss": "val_loss", "eval_wikitext_loss": "val_loss",
    "lm loss validation ppl": "other",
    "grad norm": "grad_norm", "grad_norm": "grad_norm", "gnorm": "grad_norm", "grad": "grad_norm",
    "grad-norm": "grad_norm", "optim/total_grad_norm": "grad_norm", "norm": "grad_norm",
    "learning rate": "lr", "learning_rate": "lr", "lr": "lr", "learning-rate": "lr",
    "optim/LR (group 0)": "lr", "train/lr": "lr",
    "loss scale": "loss_scale", "loss-scale": "loss_scale", "loss_scale": "loss_scale",
    "number of skipped iterations": "skipped", "number of nan iterations": "skipped",
    "accuracy": "train_acc", "val_acc": "val_acc", "eval_accuracy": "val_acc",
    "epoch": "other", "consumed samples": "other", "lm loss vs samples": "other",
    "train_runtime": "other", "valid_wps": "other", "valid_wpb": "other",
    "valid_bsz": "other", "valid_best_loss": "other", "valid1_loss": "val_loss",
    "valid1_nll_loss": "val_loss", "train/ZLoss": "other", "train/Z loss": "other",
    "eval/downstream/piqa_len_norm": "val_acc", "ewm_loss": "other", "ewm_loss_ratio": "other",
    "eval/lm/c4/CE loss": "val_loss", "optim/total grad norm": "grad_norm",
    "valid_nll_loss": "val_loss", "valid_ppl": "other", "params norm": "other", "load_balancing_loss": "other",
    # a training script's own names (epoch-lines)
    "ValAcc": "val_acc", "TrainAcc": "train_acc", "ValLoss": "val_loss", "TrainLoss": "train_loss",
    "Best Loss": "other", "Val Acc": "val_acc", "Test Acc": "val_acc",
    # timings named after what they time (a Lightning module's `loss_computation_time`)
    "loss_computation_time": "other", "train/loss_time": "other", "loss_ms": "other",
    "train_loss_step": "train_loss", "val_loss_epoch": "val_loss",
    # a GAN's generator and discriminator losses are train losses (parts of one objective:
    # analysis.loss_parts), named any way; their sub-terms stay unwatched
    "g_loss": "train_loss", "d_loss": "train_loss", "G_loss": "train_loss",
    "D_loss": "train_loss", "G loss": "train_loss", "loss_G": "train_loss",
    "Loss_D": "train_loss", "gen_loss": "train_loss", "train/d_loss": "train_loss",
    "d_loss_real": "other", "d_loss_fake": "other", "g_adv_loss": "other",
    # a grokking study's test-minus-train gap; statistics of a series (TRL's reward std)
    "generalization_loss": "other", "generalisation gap": "other",
    "rewards/accuracy_reward/std": "other", "reward_std": "other",
    # RL fine-tuning prints
    "grpo_loss": "train_loss", "kl": "other", "KL": "other", "avg_loss": "train_loss",
    # word_language_model
    "valid loss": "val_loss", "test loss": "val_loss", "valid ppl": "other", "ms/batch": "other",
}


@pytest.mark.parametrize("tag,role", CASES.items())
def test_infer_role(tag, role):
    assert infer_role(tag) == role


def test_overrides():
    assert parse_overrides(["val_loss=valid/c4", "other=loss"]) == {
        "valid/c4": "val_loss", "loss": "other"}


@pytest.mark.parametrize("item,msg", [("val_loss", "ROLE=TAG"), ("bogus=x", "unknown role")])
def test_bad_overrides(item, msg):
    with pytest.raises(InvalidParameterError, match=msg):
        parse_overrides([item])
