"""The training loss: cross-entropy on target tokens only."""
import torch

# Architectures whose logits are exactly lm_head(final hidden state), so the head can skip prompt positions.
FAST_LOSS_TYPES = {"llama", "mistral", "qwen2", "qwen3", "gemma", "gpt2", "gpt_neox", "olmo", "olmo2", "phi3", "smollm3"}


def target_loss(model, batch: dict) -> torch.Tensor:
    """Summed cross-entropy over target tokens. For known architectures the LM head runs on target
    positions only (a fraction of the sequence), which saves its time and memory."""
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    if model.config.model_type in FAST_LOSS_TYPES and not getattr(model.config, "final_logit_softcapping", None):
        hidden = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = model.get_output_embeddings()(hidden[:, :-1][keep.to(hidden.device)])
    else:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1][keep.to(logits.device)]
    return torch.nn.functional.cross_entropy(logits.float(), labels[keep].to(logits.device), reduction="sum")


def classification_loss(model, batch: dict, regression: bool) -> torch.Tensor:
    """Summed cross-entropy over rows (mean-squared error for a regression task such as STS-B)."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.float()
    if regression:
        return torch.nn.functional.mse_loss(logits.squeeze(-1), batch["labels"].float(), reduction="sum")
    return torch.nn.functional.cross_entropy(logits, batch["labels"], reduction="sum")
