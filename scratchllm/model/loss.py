"""Cross-entropy over the vocabulary without materializing the (B, T, vocab) logits.

With GPT-2's 50,257-token vocabulary, batch 8 and context 1024, the logits alone are 8 * 1024 * 50257 * 4 bytes =
1.6 GB in fp32, and autograd keeps them, their softmax and their gradient: the largest tensors of the whole training
step. The fused approach (as in Liger Kernel's "fused linear cross entropy") walks over the tokens in chunks: for each
chunk it computes the chunk's logits, the loss and, right away, the gradients with respect to the hidden states and
the head weight (softmax minus one-hot, times the other factor), then throws the logits away. Backward only scales
the stored gradients. Peak memory for the loss drops from O(B T V) to O(chunk V).

``ignore_index`` (-100, as PyTorch) marks targets that do not count (padding, prompts in finetuning). The sum is
returned with the count of counted targets, so a trainer can normalize over a whole accumulated batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int, need_grad: bool):
        # hidden: (N, d); weight: (V, d); targets: (N,). Returns the summed loss over counted targets.
        ctx.weight_dtype = weight.dtype
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        grad_hidden = torch.zeros_like(hidden) if need_grad else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_grad else None
        for start in range(0, hidden.size(0), chunk):
            rows = torch.arange(start, min(start + chunk, hidden.size(0)), device=hidden.device)
            rows = rows[targets[rows] != IGNORE_INDEX]  # only counted targets cost anything
            h, t = hidden[rows], targets[rows]  # (n, d), (n,)
            logits = (h @ weight.T).float()  # (n, V): the only vocabulary-sized tensor, one chunk at a time
            lse = torch.logsumexp(logits, dim=-1)  # (n,)
            total += (lse - logits.gather(1, t[:, None]).squeeze(1)).sum()
            if need_grad:
                # d(sum of CE)/d logits = softmax - one_hot(target), computed in place over the logits.
                grad_logits = logits.sub_(lse[:, None]).exp_()
                grad_logits[torch.arange(len(rows), device=rows.device), t] -= 1.0
                grad_logits = grad_logits.to(hidden.dtype)
                grad_hidden[rows] = grad_logits @ weight  # (n, d)
                grad_weight.addmm_(grad_logits.T.float(), h.float())  # (V, d), accumulated in place
        ctx.save_for_backward(grad_hidden, grad_weight)
        return total

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        # The stored gradients are scaled in place and handed over, not copied: a vocabulary-sized (V, d) tensor
        # fewer at the peak. That makes this backward single-use, so a second call (retain_graph) is refused.
        if getattr(ctx, "used", False):
            raise RuntimeError("the chunked cross-entropy's backward can run only once (no retain_graph)")
        ctx.used = True
        grad_hidden, grad_weight = ctx.saved_tensors
        gh = grad_hidden.mul_(grad_output.to(grad_hidden.dtype)) if ctx.needs_input_grad[0] else None
        gw = grad_weight.mul_(grad_output).to(ctx.weight_dtype) if ctx.needs_input_grad[1] else None
        return gh, gw, None, None, None


def chunked_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of cross-entropy, number of counted targets) for hidden (..., d) against head weight (V, d)."""
    hidden = hidden.reshape(-1, hidden.size(-1))  # (N, d)
    targets = targets.reshape(-1)  # (N,)
    # Autograd is always off inside Function.forward, so whether gradients will be wanted is decided here: not under
    # torch.no_grad() (evaluation), where computing them would double the cost for nothing.
    need_grad = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    loss = _ChunkedLinearCrossEntropy.apply(hidden, weight, targets, chunk, need_grad)
    return loss, (targets != IGNORE_INDEX).sum()


def full_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain version: (sum of cross-entropy over counted targets, their number), logits (..., V) in fp32."""
    targets = targets.reshape(-1)
    logits = logits.reshape(-1, logits.size(-1)).float()  # (N, V)
    loss = F.cross_entropy(logits, targets, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, (targets != IGNORE_INDEX).sum()
