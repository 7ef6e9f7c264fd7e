"""LoRA SFT on the selected instruction data (paper section 5): TRL SFTTrainer + PEFT."""

from xlexp.sft.data import take, to_prompt_completion
from xlexp.sft.train import build_trainer, fit, train_lora

__all__ = ["build_trainer", "fit", "take", "to_prompt_completion", "train_lora"]
