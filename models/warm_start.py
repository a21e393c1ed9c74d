"""A folded student that starts from its trained original (`--init teacher`): every slot reads a copy of it.

A FoldedCNN at fold f with multiplier m has hidden layers m times as wide as the original's, room for
`copies = int(m)` copies of every layer side by side (2 at f=4). `start_from_teacher` writes them
block-diagonally (Net2Net's function-preserving idea): slot j's input channels feed copy j % copies, scaled so a
copy sees the mean of the images of its slots; each hidden layer holds the copies on its diagonal, zero off it;
slot j's logits read copy j % copies. At f=4, slots 0 and 2 start as the original on the mean of their two images,
slots 1 and 3 likewise; the channels beyond the copies (at f=2 and f=3) keep their fresh initialisation, and the
copies do not read them, so the start is exact. It is checked on random images before training.

`start_slots_apart` (`--init separate`) uses the same copying for a student with no teacher to copy: a freshly
initialised *narrow* original, every width m/f of the original's (1/sqrt(f) at the paper's m), fits f times in the
folded widths, so every slot gets its own block of channels in every layer, and nothing crosses between slots at
the start. A fresh folded model instead starts with every slot's image mixed into every channel, which the student
must first learn to pull apart (results/accuracy/choices.md, round 18).
"""
import torch

from models.fold import fold_input, unfold_output


def _blocks(out, cin, pairs):
    """Row and column slices of (row block, column block) index pairs of an (out, cin) weight's copies."""
    return [(slice(r * out, (r + 1) * out), slice(c * cin, (c + 1) * cin)) for r, c in pairs]


@torch.no_grad()
def start_from_teacher(student, teacher, fold, image_shape, need=1):
    """Copy `teacher` (the original's plain net) into `student` (its FoldedCNN's plain net at `fold`, built by the
    same code, taking `fold` images of `image_shape` (C, H, W) per input) as the module docstring says; returns the
    number of copies. A ValueError, `student` unchanged, when the layers do not line up, fewer than `need` copies
    fit, or the copied student does not compute the original on the mean of each copy's images."""
    s_state, t_state = student.state_dict(), teacher.state_dict()
    keys = [k for k, v in s_state.items() if v.dim() >= 2]
    if keys != [k for k, v in t_state.items() if v.dim() >= 2] or len(keys) < 2:
        raise ValueError("the folded model's layers are not the original's")
    copies = min([fold] + [s_state[k].shape[0] // t_state[k].shape[0] for k in keys[:-1]] +
                 [s_state[k].shape[1] // t_state[k].shape[1] for k in keys[1:]])
    if copies < need:
        raise ValueError("the folded model's layers are narrower than the original's" if need == 1 else
                         f"only {copies} copies of the narrow model fit in the folded layers, not one per slot ({need})")
    new_state, layer, blocks = {}, None, copies
    for key, value in s_state.items():
        if key not in t_state or value.dim() == 0:
            continue
        t, new = t_state[key], value.clone()
        if value.dim() >= 2:
            layer, out, cin = keys.index(key), t.shape[0], t.shape[1]
            if layer == 0:  # the input: slot j's channels into copy j % copies, a copy seeing the mean of its slots
                pairs = [(j % copies, j) for j in range(fold)]
                sharing = [sum(1 for j in range(fold) if j % copies == b) for b in range(copies)]
                scale = [1 / sharing[j % copies] for j in range(fold)]
            elif layer == len(keys) - 1:  # the logits: slot j's read copy j % copies
                pairs, scale = [(j, j % copies) for j in range(fold)], [1.0] * fold
            else:
                pairs, scale = [(b, b) for b in range(copies)], [1.0] * copies
            blocks = fold if layer == len(keys) - 1 else copies
            for rows, _ in _blocks(out, cin, pairs):
                new[rows] = 0  # a copy reads nothing but its own block
            for (rows, cols), factor in zip(_blocks(out, cin, pairs), scale):
                new[rows, cols] = t * factor
        else:  # a bias, or a norm's vector after the layer: one per copy (per slot for the logits' bias)
            n = t.shape[0]
            for b in range(blocks if n * blocks <= value.shape[0] else copies):
                new[b * n:(b + 1) * n] = t
        new_state[key] = new
    before = {k: v.clone() for k, v in s_state.items()}
    student.load_state_dict({**s_state, **new_state})
    error = _error(student, teacher, fold, copies, image_shape)
    if not error < 1e-4:
        student.load_state_dict(before)
        raise ValueError(f"the copied start does not reproduce the original (relative error {error:.1e})")
    return copies


@torch.no_grad()
def _error(student, teacher, fold, copies, image_shape):
    """The largest difference, relative to the largest logit, between the copied `student` on random images and
    `teacher` on the mean of the images each copy sees (in eval mode: norms use their running statistics)."""
    modes = student.training, teacher.training
    student.eval(), teacher.eval()
    try:
        param = next(teacher.parameters())
        images = torch.rand(2 * fold, *image_shape, dtype=param.dtype, device=param.device)
        logits = unfold_output(student(fold_input(images, fold)), fold)
        expected = []
        for g in range(2):
            group = images[g * fold:(g + 1) * fold]
            means = [group[[j for j in range(fold) if j % copies == b]].mean(0) for b in range(copies)]
            expected += [means[j % copies] for j in range(fold)]
        wanted = teacher(torch.stack(expected))
        return ((logits - wanted).abs().max() / wanted.abs().max().clamp_min(1e-12)).item()
    except RuntimeError:  # shapes that do not line up
        return float("inf")
    finally:
        student.train(modes[0]), teacher.train(modes[1])


def start_slots_apart(student, narrow, fold, image_shape):
    """`--init separate`: `student` (a FoldedCNN's plain net at `fold`) starts as `fold` copies of `narrow` (the same
    model at f=1 with the folded multiplier / f, freshly initialised), one a slot, zero between slots; a ValueError,
    `student` unchanged, when one copy a slot does not fit (module docstring)."""
    return start_from_teacher(student, narrow, fold, image_shape, need=fold)
