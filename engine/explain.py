"""A short explanation of each phase, in English and Korean, adapted from the study notes.

``explain(phase, recipe, accumulate, lang)`` says what the phase does, why, and what to look
at on screen, for the recipe at hand: the zero_grad text depends on accumulate mode and on
``set_to_none``, the step text on the optimizer, the loss text on the loss and class weights,
define and forward on the data. The Korean follows the notes' own wording where it has one
(변화도, 손실, 역전파, "new weight = weight - learning rate * gradient").
"""

from __future__ import annotations

from dataclasses import dataclass

from .phases import Phase
from .recipe import MODELS, Recipe
from .records import PhaseRecord
from .summary import shape_text

LANGS = ("en", "ko")
LENET_PATH = (
    "conv1 → relu → max_pool2d → conv2 → relu → max_pool2d → flatten → "
    "fc1 → relu → fc2 → relu → fc3"
)


@dataclass(frozen=True)
class Explanation:
    what: str
    why: str
    look: str

    def text(self, lang: str) -> str:
        why, look = ("왜", "화면에서") if lang == "ko" else ("Why", "On screen")
        return f"{self.what}\n\n{why}: {self.why}\n\n{look}: {self.look}"


def _weights(recipe: Recipe) -> str:
    return ", ".join(f"{k}→{w:g}" for k, w in recipe.class_weights)


def _random_data(recipe: Recipe) -> tuple[str, str]:
    """The input and target lines define runs (codegen's), so the text matches the code."""
    from .codegen import define_code

    lines = define_code(recipe)
    input = next(line for line in lines if line.startswith("input ="))
    target = next((line for line in lines if "target =" in line), "target")
    # Before define a user model's target is a comment in the code; its call is enough here.
    target = target.lstrip("# ").split("  #")[0]
    return input.removeprefix("input = "), target.removeprefix("target = ")


def _watch(recipe: Recipe, lang: str) -> str:
    if recipe.watch:
        return recipe.watch
    if recipe.model == "lenet":
        return "conv1.bias"
    return "지켜보는 매개변수" if lang == "ko" else "the watched parameter"


# ----------------------------------------------------------------------------- define
def _define(recipe: Recipe, accumulate: bool, lang: str) -> Explanation:
    seed, bs = recipe.seed, recipe.batch_size
    lenet = recipe.model == "lenet"
    ce = recipe.loss == "cross-entropy"
    if lang == "ko":
        net = (
            "신경망(Net: conv1, conv2, fc1, fc2, fc3, 학습 가능한 매개변수 tensor 10개)"
            if lenet
            else f"신경망({recipe.model})"
        )
        what = (
            f"학습에 필요한 것을 정해진 순서로 만든다: torch.manual_seed({seed}) → {net} → "
            "데이터 → 손실 함수 → optimizer. "
        )
        if recipe.data == "digits":
            what += (
                "데이터는 실제 손글씨 숫자 1,797장(8×8)을 1×32×32로 키운 것이고, "
                f"DataLoader가 섞어서 {bs}장씩 batch로 내준다 (노트의 batch generator)."
            )
        else:
            input, code = _random_data(recipe)
            target = f"임의의 class 번호({code})" if ce else f"임의의 정답({code})"
            what += (
                f"데이터는 {'튜토리얼 그대로: ' if lenet else ''}임의의 입력({input})과 "
                f"{target}를 매 반복마다 다시 쓴다."
            )
        why = (
            "seed를 먼저 고정해야 무작위로 초기화되는 가중치(와 임의의 데이터)가 매번 같아지고, "
            "화면의 숫자가 plain PyTorch로 돌린 것과 똑같아진다."
        )
        look = (
            "매개변수 목록: weight와 bias마다 shape. 아직 역전파를 하지 않았으므로 "
            "모든 .grad는 None이다."
        )
        return Explanation(what, why, look)
    net = (
        "the Net (conv1, conv2, fc1, fc2, fc3: 10 learnable parameter tensors)"
        if lenet
        else f"the network ({recipe.model})"
    )
    what = (
        f"Builds everything the loop needs, in a fixed order: torch.manual_seed({seed}), "
        f"{net}, the data, the loss function, the optimizer. "
    )
    if recipe.data == "digits":
        what += (
            "The data is 1,797 real 8×8 handwritten digits scaled up to 1×32×32, served by a "
            f"DataLoader in shuffled batches of {bs} (the notes' batch generator)."
        )
    else:
        input, code = _random_data(recipe)
        target = f"random class indices ({code})" if ce else f"a random target ({code})"
        source = "the tutorial's: " if lenet else ""
        what += (
            f"The data is {source}a random input ({input}) and {target}, reused every iteration."
        )
    why = (
        "Seeding first makes the random initial weights (and the random data) the same on "
        "every run, so every number here is the one plain PyTorch computes."
    )
    look = (
        "The parameter list, each weight and bias with its shape. Every .grad is None: "
        "nothing has been backpropagated yet."
    )
    return Explanation(what, why, look)


# ----------------------------------------------------------------------------- forward
def record_output_shape(record: PhaseRecord | None) -> tuple[int, ...] | None:
    """The shape of what the model returned, from a forward record (else None)."""
    if record is None or record.phase is not Phase.FORWARD:
        return None
    return next((a.shape for a in record.activations if a.name == "output"), None)


def _recipe_output_shape(recipe: Recipe) -> tuple[int, ...] | None:
    """The output shape when the recipe alone says it: a shipped model, or digits."""
    if recipe.data == "digits":
        return (recipe.batch_size, 10)  # engine.digits: ten classes
    if recipe.model in MODELS:
        _, default, classes = MODELS[recipe.model]
        return ((recipe.input_shape or default)[0], classes)
    return None


def _output_sentence(recipe: Recipe, shape: tuple[int, ...] | None, lang: str) -> str:
    """What the output holds, said from its real shape: ``[8, 10]``: 10 scores per sample."""
    input_shape = recipe.input_shape or (
        MODELS[recipe.model][1] if recipe.model in MODELS else None
    )
    image = recipe.data == "digits" or (input_shape is not None and len(input_shape) >= 3)
    ko = lang == "ko"
    unit = ("이미지" if image else "샘플") if ko else ("image" if image else "sample")
    if shape is None:
        return "output은 신경망의 추측이다." if ko else "The output is the network's guess."
    dims = shape_text(shape)
    per = 1
    for d in shape[1:]:
        per *= d
    if len(shape) == 2 and per > 1:
        if ko:
            return f"output {dims}은 신경망의 추측: {unit}마다 class별 점수 {per}개."
        return f"The output {dims} is the network's guess: {per} scores per {unit}, one per class."
    if ko:
        return f"output {dims}은 신경망의 추측: {unit}마다 값 {per}개."
    value = "one value" if per == 1 else f"{per} values"
    return f"The output {dims} is the network's guess: {value} per {unit}."


def _forward(
    recipe: Recipe, accumulate: bool, lang: str, output_shape: tuple[int, ...] | None = None
) -> Explanation:
    # The record's shape when there is one; before forward ran, what the recipe implies.
    shape = output_shape if output_shape is not None else _recipe_output_shape(recipe)
    guess = _output_sentence(recipe, shape, lang)
    lenet = recipe.model == "lenet"
    digits = recipe.data == "digits"
    bs = recipe.batch_size
    if lang == "ko":
        what = ""
        if digits:
            what = (
                f"먼저 DataLoader에서 다음 batch({bs}장)를 꺼낸다: 반복마다 새 batch이고, "
                "epoch마다 다시 섞인다. "
            )
        what += "입력을 신경망에서 전파(process)한다" + (f": {LENET_PATH}." if lenet else ".")
        why = (
            f"{guess} 이 과정에서 autograd가 "
            "모든 연산을 기록해서, backward가 거꾸로 따라갈 연산 그래프를 만든다."
        )
        look = (
            "층마다 activation의 shape (1×32×32에서 점점 줄어 10개 값이 된다), "
            "grad_fn이 붙은 output."
            if lenet
            else "모든 하위 모듈의 activation과 shape, grad_fn이 붙은 output."
        )
        if digits:
            look += " 숫자 pane: batch의 이미지, 정답(label), 예측(output의 argmax), 정확도."
        return Explanation(what, why, look)
    what = ""
    if digits:
        what = (
            f"First takes the next batch of {bs} digits from the DataLoader: a new batch "
            "every iteration, reshuffled every epoch. "
        )
    what += "Runs the input through the network" + (f": {LENET_PATH}." if lenet else ".")
    why = (
        f"{guess} On the way "
        "autograd records every operation, building the graph backward will walk."
    )
    look = (
        "The activations, each layer's output shape shrinking from 1×32×32 to 10 values, "
        "and the output printed with its grad_fn."
        if lenet
        else "The activations of every submodule with their shapes, and the output printed "
        "with its grad_fn."
    )
    if digits:
        look += (
            " The digits pane: the batch's images, labels, predictions (argmax of the "
            "output) and accuracy."
        )
    return Explanation(what, why, look)


# ----------------------------------------------------------------------------- loss
def _loss(recipe: Recipe, accumulate: bool, lang: str) -> Explanation:
    ce = recipe.loss == "cross-entropy"
    digits = recipe.data == "digits"
    if lang == "ko":
        what = (
            "손실 함수는 (output, target)을 한 쌍의 입력으로 받아, 출력이 정답으로부터 "
            "얼마나 멀리 떨어져 있는지 계산한다. "
        )
        if not ce:
            what += "nn.MSELoss는 평균제곱오차(mean-squared error): 차이를 제곱해서 평균낸 값."
            if digits:
                what += " target은 정답 숫자의 one-hot 벡터(F.one_hot(label, 10).float())."
        else:
            what += (
                "nn.CrossEntropyLoss는 output 10개를 class 점수(logit)로 보고, softmax로 "
                "확률로 바꾼 뒤 정답 class 확률의 −log를 손실로 쓴다. "
            )
            if recipe.class_weights:
                what += (
                    f"class 가중치({_weights(recipe)})는 그 class의 loss에 큰 값을 곱해서 "
                    "더 잘 학습시키게 만든다 (노트의 7번 class 예). "
                    "nn.CrossEntropyLoss(weight=w)는 인스턴스화할 때 한 번만 설정하면 계속 "
                    "적용되고, F.cross_entropy(output, target, weight=w)는 호출할 때마다 "
                    "weight를 넣어줘야 한다. 값은 같다. 단, 평균을 낼 때 batch에 있는 "
                    "class들의 가중치 합으로 나누므로, batch가 한 class뿐이면(random "
                    "데이터의 sample 하나) 가중치가 약분되어 loss가 그대로다."
                )
            else:
                what += (
                    "nn.CrossEntropyLoss()(모듈)와 F.cross_entropy(output, target)(함수)는 "
                    "같은 계산이고 같은 결과를 낸다."
                )
        why = "loss는 줄여야 할 숫자 하나이고, loss.grad_fn이 역전파가 시작되는 곳이다."
        first = "NllLossBackward0 ← LogSoftmaxBackward0" if ce else "MseLossBackward0"
        look = (
            f"loss.grad_fn과 next_functions: {first} ← AddmmBackward0 (fc3) ← … ← "
            "AccumulateGrad (매개변수마다 하나), 노트의 연산 그래프."
        )
        if ce:
            look += " nn.CrossEntropyLoss와 F.cross_entropy의 값 비교 (같으면 True)."
        return Explanation(what, why, look)
    what = "The loss function takes (output, target) and measures how far the output is from it. "
    if not ce:
        what += "nn.MSELoss is the mean-squared error: the mean of the squared differences."
        if digits:
            what += " The target is the label's one-hot vector (F.one_hot(label, 10).float())."
    else:
        what += (
            "nn.CrossEntropyLoss reads the 10 outputs as class scores (logits): softmax makes "
            "them probabilities, and the loss is −log of the right class's probability. "
        )
        if recipe.class_weights:
            what += (
                f"Class weights ({_weights(recipe)}) multiply that class's loss, the notes' "
                "way to make the net find class 7 better. nn.CrossEntropyLoss(weight=w) keeps "
                "the weight from construction on; F.cross_entropy(output, target, weight=w) "
                "gives the same value but needs weight= on every call. The mean divides by the "
                "weights of the batch's classes, so a batch of one class (the random recipe's "
                "single sample) gets the same loss with or without weights."
            )
        else:
            what += (
                "nn.CrossEntropyLoss() (a module) and F.cross_entropy(output, target) (a "
                "function) are the same computation with the same result."
            )
    why = "The loss is the one number to make smaller; loss.grad_fn is where backward starts."
    first = "NllLossBackward0 ← LogSoftmaxBackward0" if ce else "MseLossBackward0"
    look = (
        f"loss.grad_fn and its next_functions: {first} ← AddmmBackward0 (fc3) ← … ← "
        "AccumulateGrad (one per parameter), the graph of the notes."
    )
    if ce:
        look += " The nn.CrossEntropyLoss vs F.cross_entropy comparison (True when equal)."
    return Explanation(what, why, look)


# ----------------------------------------------------------------------------- zero_grad
def _zero_grad(recipe: Recipe, accumulate: bool, lang: str) -> Explanation:
    watch = _watch(recipe, lang)
    manual = recipe.optimizer == "manual"
    if lang == "ko":
        why = "backward는 .grad에 누적하므로, 비우지 않으면 이번 변화도가 지난 변화도에 더해진다."
        if accumulate:
            what = (
                "건너뜀 (accumulate 모드): 이전 backward의 변화도가 .grad에 그대로 남아 "
                "있어서, 다음 backward는 그 위에 더한다 (after = before + fresh). 같은 batch로 "
                "두 번 backward하면 변화도가 정확히 2배가 되고, step은 그 합을 쓴다."
            )
            look = f"{watch}.grad가 그대로 남아 있다. 다음 backward에서 before + fresh를 보자."
            return Explanation(what, why, look)
        what = (
            "수동 update에는 optimizer가 없으므로 net.zero_grad()로 모듈이 자기 매개변수의 "
            "변화도를 비운다. "
            if manual
            else ""
        )
        if recipe.zero_grad == "none":
            what += (
                "zero_grad()는 변화도 버퍼를 비운다. PyTorch 2.0부터 기본값이 "
                "set_to_none=True라서 .grad가 0이 아니라 None이 된다 (메모리 절약). "
                "다음 backward는 더하지 않고 새로 쓴다."
            )
            look = f"{watch}.grad가 None이 된다 (노트의 옛 출력은 0이었다)."
        else:
            what += (
                "zero_grad(set_to_none=False)는 모든 .grad를 0으로 채운다. 예전 PyTorch의 "
                "동작으로, 노트의 출력 tensor([0., 0., 0., 0., 0., 0.])이 바로 이것이다."
            )
            look = (
                f"{watch}.grad가 0으로 채워진다: tensor([0., 0., 0., 0., 0., 0.]). 첫 반복에서는 "
                "채울 .grad가 아직 없어서 None 그대로다."
            )
        return Explanation(what, why, look)
    why = (
        "backward adds into .grad, so without clearing, this iteration's gradient would be "
        "added to the last one's."
    )
    if accumulate:
        what = (
            "Skipped (accumulate mode): the gradients of earlier backward calls stay in .grad, "
            "so the next backward adds into them (after = before + fresh). Two backwards on "
            "the same batch give exactly twice the gradient; the step uses the sum."
        )
        look = f"{watch}.grad keeps its value; watch before + fresh in the next backward."
        return Explanation(what, why, look)
    what = (
        "With the manual update there is no optimizer: net.zero_grad() clears the module's "
        "own parameters. "
        if manual
        else ""
    )
    if recipe.zero_grad == "none":
        what += (
            "zero_grad() clears the gradient buffers. Since PyTorch 2.0 it sets them to None "
            "(set_to_none=True), which frees their memory; the next backward writes fresh "
            "gradients instead of adding."
        )
        look = f"{watch}.grad becomes None (the notes' older output showed zeros)."
    else:
        what += (
            "zero_grad(set_to_none=False) fills every .grad with zeros, as PyTorch did "
            "before 2.0: the notes' output tensor([0., 0., 0., 0., 0., 0.])."
        )
        look = (
            f"{watch}.grad becomes zeros: tensor([0., 0., 0., 0., 0., 0.]). On the first "
            "iteration it stays None: there is no .grad yet to fill."
        )
    return Explanation(what, why, look)


# ----------------------------------------------------------------------------- backward
def _backward(recipe: Recipe, accumulate: bool, lang: str) -> Explanation:
    watch = _watch(recipe, lang)
    if lang == "ko":
        what = (
            "loss.backward()는 loss에서 연산 그래프를 거꾸로 따라가며 연쇄 법칙(chain rule)으로 "
            "매개변수마다 loss의 변화도(gradient)를 계산해 .grad에 누적한다."
        )
        if accumulate:
            what += " accumulate 모드라서 .grad에 남아 있던 값에 새 변화도가 더해진다."
        why = (
            "변화도는 가중치를 어느 쪽으로 움직이면 loss가 커지는지 알려 준다. step은 그 "
            "반대쪽으로 간다. backward가 끝나면 그래프가 해제되므로, 다시 backward하려면 "
            "새 forward가 필요하다 (또는 retain_graph=True)."
        )
        look = f"노트처럼 backward 전과 후의 {watch}.grad, 매개변수마다 변화도의 크기(norm)."
        if accumulate:
            look += " after == before + fresh 확인."
        return Explanation(what, why, look)
    what = (
        "loss.backward() walks the graph back from the loss and, by the chain rule, computes "
        "the gradient of the loss for every parameter, accumulating it into .grad."
    )
    if accumulate:
        what += " In accumulate mode .grad still holds earlier gradients: the fresh one is added."
    why = (
        "The gradient tells which way each weight would make the loss larger; the step goes "
        "the other way. backward frees the graph: another backward needs a new forward "
        "(or retain_graph=True)."
    )
    look = f"{watch}.grad before and after backward, as in the notes; each parameter's grad norm."
    if accumulate:
        look += " The check after == before + fresh."
    return Explanation(what, why, look)


# ----------------------------------------------------------------------------- step
_STEP_EN = {
    "sgd": (
        "optimizer.step() with SGD: new weight = weight − learning rate × gradient, for "
        "every parameter (lr={lr}). Plain SGD keeps no state: optimizer.state stays empty."
    ),
    "manual": (
        "The notes' hand-written update: for f in net.parameters(): "
        "f.data.sub_(f.grad.data * learning_rate) (lr={lr}). The SGD rule without torch.optim; "
        ".data changes the weights outside autograd."
    ),
    "momentum": (
        "SGD with momentum 0.9: every parameter keeps a momentum_buffer, buf = 0.9·buf + grad "
        "(buf = grad on the first step), and moves by −lr·buf (lr={lr}). While gradients "
        "agree on a direction, the steps grow."
    ),
    "adam": (
        "Adam keeps two running averages per parameter: exp_avg of the gradient (β1 = 0.9) "
        "and exp_avg_sq of its square (β2 = 0.999). Corrected for starting at zero, each "
        "weight moves by about lr·exp_avg/√exp_avg_sq (lr={lr}): a step near lr per weight, "
        "whatever the gradient's scale."
    ),
    "rmsprop": (
        "RMSprop keeps square_avg, a running average of grad² (α = 0.99), and divides the "
        "gradient by its square root (+ eps) (lr={lr}): weights with large gradients take "
        "smaller steps."
    ),
}
_STEP_KO = {
    "sgd": (
        "optimizer.step()은 SGD 규칙으로 가중치를 갱신한다: new weight = weight - learning "
        "rate * gradient (lr={lr}). momentum 없는 SGD는 상태를 저장하지 않으므로 "
        "optimizer.state는 비어 있다."
    ),
    "manual": (
        "노트의 간단한 python 코드: for f in net.parameters(): "
        "f.data.sub_(f.grad.data * learning_rate) (lr={lr}). torch.optim 없이 쓴 SGD "
        "규칙이고, .data로 autograd 밖에서 가중치를 바꾼다."
    ),
    "momentum": (
        "momentum 0.9인 SGD: 매개변수마다 momentum_buffer를 두고 buf = 0.9·buf + grad "
        "(첫 step에서는 buf = grad), 가중치를 −lr·buf만큼 움직인다 (lr={lr}). 변화도가 같은 "
        "방향을 가리키는 동안 보폭이 커진다."
    ),
    "adam": (
        "Adam은 매개변수마다 이동 평균 두 개를 둔다: 변화도의 평균 exp_avg (β1 = 0.9), "
        "변화도 제곱의 평균 exp_avg_sq (β2 = 0.999). 0에서 시작한 만큼 보정한 뒤 가중치를 "
        "약 lr·exp_avg/√exp_avg_sq만큼 움직인다 (lr={lr}): 변화도의 크기와 상관없이 "
        "가중치마다 lr 정도의 보폭."
    ),
    "rmsprop": (
        "RMSprop은 grad²의 이동 평균 square_avg (α = 0.99)를 두고, 변화도를 그 제곱근(+ eps)"
        "으로 나눈다 (lr={lr}): 변화도가 큰 가중치일수록 보폭이 작아진다."
    ),
}
_STATE = {
    "momentum": "momentum_buffer",
    "adam": "step, exp_avg, exp_avg_sq",
    "rmsprop": "step, square_avg",
}
_FIRST_STEP_EN = {
    "momentum": "On the first step buf = grad, so it moves like plain SGD; later steps add the old direction.",
    "adam": (
        "On the first step every weight moves by almost exactly lr, unless its gradient is "
        "tiny next to eps (1e-8)."
    ),
    "rmsprop": (
        "square_avg starts at 0, so the first step moves weights by about 10·lr (less where "
        "the gradient is tiny next to eps)."
    ),
}
_FIRST_STEP_KO = {
    "momentum": "첫 step에서는 buf = grad라서 plain SGD와 같이 움직이고, 그 뒤로는 이전 방향이 더해진다.",
    "adam": (
        "첫 step에서는 가중치가 모두 거의 정확히 lr만큼 움직인다 (변화도가 eps(1e-8)에 비해 "
        "아주 작은 가중치는 빼고)."
    ),
    "rmsprop": (
        "square_avg가 0에서 시작하므로 첫 step에서는 가중치가 약 10·lr만큼 움직인다 (변화도가 "
        "eps에 비해 아주 작으면 덜 움직인다)."
    ),
}


def _step(recipe: Recipe, accumulate: bool, lang: str) -> Explanation:
    watch = _watch(recipe, lang)
    opt = recipe.optimizer
    ko = lang == "ko"
    what = (_STEP_KO if ko else _STEP_EN)[opt].format(lr=repr(recipe.lr))
    if accumulate:
        what += (
            " accumulate 모드에서는 지난 zero_grad 이후 모든 backward의 합이 step에 쓰인다."
            if ko
            else " In accumulate mode the step uses the sum of every backward since the last "
            "zero_grad."
        )
    if ko:
        why = (
            "loss가 작아지는 쪽(변화도의 반대쪽)으로 가중치를 조금 옮긴다. 이것을 반복하는 "
            "것이 학습이다."
        )
    else:
        why = "Moving each weight a little against its gradient makes the loss smaller; repeating it is training."
    if opt in ("sgd", "manual"):
        look = (
            f"step 전후의 {watch}, 매개변수마다 Δ = −lr·grad인지 확인, optim.SGD와 수동 loop가 "
            "같은 매개변수를 주는지 비교 (optim.SGD는 p − lr·g를 한 번에 반올림할 수 있어서, "
            "몇몇 원소는 float 반올림 한 번만큼 다르다)."
            if ko
            else f"{watch} before and after; Δ = −lr·grad checked for every parameter; "
            "optim.SGD vs the manual loop on the same weights and grads (equal up to one float "
            "rounding: optim.SGD may round p − lr·g once where the loop rounds g·lr first)."
        )
        if recipe.data == "digits" and recipe.lr <= SLOW_DIGITS_LR:
            look += " " + _slow_digits(recipe.lr, ko)
    else:
        first = (_FIRST_STEP_KO if ko else _FIRST_STEP_EN)[opt]
        state = f"optimizer.state[net.{watch}]" if " " not in watch else "optimizer.state"
        look = (
            f"step 전후의 {watch}, print({state})에 보이는 {_STATE[opt]}. " + first
            if ko
            else f"{watch} before and after; {state} holds {_STATE[opt]}. " + first
        )
    return Explanation(what, why, look)


# SGD at this lr or below barely moves a digits loss in a session's worth of iterations
# (tests/test_explain.py measures the figures below through the engine).
SLOW_DIGITS_LR = 0.01


def _slow_digits(lr: float, ko: bool) -> str:
    """Why the digits loss hardly falls with plain SGD at a small lr, and what learns."""
    if ko:
        return (
            f"lr {lr!r}의 SGD로는 digits의 loss가 아주 천천히 줄어든다 (튜토리얼 Net, batch 16, "
            "100번 반복: cross-entropy 2.303 → 2.301). 눈에 보이게 배우려면 "
            "--optimizer adam --lr 0.001 (2.29 → 0.57)이나 lr 0.1 (2.30 → 1.92)을 써 보자 "
            "(명령 팔레트에서도 바꿀 수 있다)."
        )
    return (
        f"At lr {lr!r}, SGD moves a digits loss very slowly (the tutorial Net, batch 16, 100 "
        "iterations: cross-entropy 2.303 → 2.301). To see it learn, try --optimizer adam "
        "--lr 0.001 (2.29 → 0.57) or lr 0.1 (2.30 → 1.92); the command palette switches too."
    )


_BUILDERS = {
    Phase.DEFINE: _define,
    Phase.FORWARD: _forward,
    Phase.LOSS: _loss,
    Phase.ZERO_GRAD: _zero_grad,
    Phase.BACKWARD: _backward,
    Phase.STEP: _step,
}


def explanation(
    phase: Phase | str,
    recipe: Recipe,
    accumulate: bool = False,
    lang: str = "en",
    output_shape: tuple[int, ...] | None = None,
) -> Explanation:
    """The three parts (what, why, on screen) of one phase's explanation.

    ``output_shape``: what the forward really returned (``record_output_shape``), for the
    forward text; without it, the shape the recipe implies (unknown for your own model).
    """
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r} (choose en or ko)")
    if Phase(phase) is Phase.FORWARD:
        return _forward(recipe, accumulate, lang, output_shape)
    return _BUILDERS[Phase(phase)](recipe, accumulate, lang)


def explain(
    phase: Phase | str,
    recipe: Recipe,
    accumulate: bool = False,
    lang: str = "en",
    output_shape: tuple[int, ...] | None = None,
) -> str:
    """What the phase does, why, and what to look at on screen, for this recipe."""
    return explanation(phase, recipe, accumulate, lang, output_shape).text(lang)
