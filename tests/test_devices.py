"""What takes a device runs on each available one (the CPU here; a GPU where there is one): fit with
augmentation, the LoRA merge round trip, the regularisation measures, the language model, export and predict.
Each failed on a GPU once because a helper fed CPU tensors to a model on the GPU, or drew its random numbers there."""

from __future__ import annotations

import torch
from devices import on_each_device

from ftlib import augment, data, export, lora, models, regularize
from ftlib.course.lessons import adapters
from ftlib.evaluation import evaluate
from ftlib.lm.generate import generate
from ftlib.lm.model import Config, TinyLM
from ftlib.runtime import model_device
from ftlib.train import fit


def _tiny_set() -> data.ImageSet:
    return data.few_shot("mnist", 2, 0)


@on_each_device
def test_fit_with_augmentation_trains_on_the_device_and_evaluates_there(device):
    model = models.GlyphNet(10)
    history = fit(model, _tiny_set(), 3, lr=1e-3, batch_size=8, augment=augment.standard(1.0), seed=0,
                  device=device, progress=False)
    assert model_device(model).type == torch.device(device).type and len(history.loss) == 3
    assert 0.0 <= evaluate(model, data.test_set("mnist")).accuracy <= 1.0


@on_each_device
def test_lora_merge_round_trip_takes_cpu_images_for_a_model_on_the_device(device):
    model = lora.add_lora(models.pretrained_start(10, 0), rank=2).to(device).eval()
    for layer in lora.lora_layers(model):
        torch.nn.init.normal_(layer.lora_B, std=0.01)  # B starts at zero: make the adapters do something
    images = data.test_set("mnist").images[:16]  # on the CPU, as the lesson passes them
    result = adapters.merge_round_trip(model, images)
    assert result["logits agree"] and result["same predictions"] == 16 and result["restored"] < 1e-6
    base, extra = lora.multiply_adds(model, images[:1])
    assert base > 0 and extra > 0


@on_each_device
def test_the_regularisation_measures_take_cpu_images_for_a_model_on_the_device(device):
    model = models.pretrained_start(10, 0).to(device)
    start = regularize.starting_point(model)
    source = models.load_pretrained()
    letters = data.test_set("letters")
    probe = regularize.source_probe(model, source.head, letters.images[:64])
    logits = probe(letters.images[:32].to(model_device(probe)))
    assert regularize.output_change(logits, source.eval()(letters.images[:32])) >= 0.0
    assert regularize.drift(model, start) == 0.0
    assert 0.0 <= regularize.retention(model, source.head, letters) <= 1.0


@on_each_device
def test_the_language_model_samples_on_the_device(device):
    torch.manual_seed(0)
    model = TinyLM(Config(layers=1, dim=32, heads=2)).to(device).eval()
    text = generate(model, "def f(x):", 8, seed=0)
    assert isinstance(text, str) and len(text) <= 8


@on_each_device
def test_a_model_trained_on_the_device_exports_and_predicts(device, tmp_path):
    from PIL import Image

    model = models.GlyphNet(2).to(device)
    path = export.save(model, tmp_path / "m.safetensors", "glyphnet", ["a", "b"])
    image = tmp_path / "x.png"
    Image.fromarray((data.test_set("mnist").images[0, 0] * 255).byte().numpy()).save(image)
    [prediction] = export.predict(path, [image])
    assert prediction.label in {"a", "b"} and 0.0 <= prediction.probability <= 1.0


@on_each_device
def test_lesson_11s_export_agreement_takes_cpu_images_for_a_model_on_the_device(device, tmp_path):
    from PIL import Image

    from ftlib.course.lessons import your_own_images
    from ftlib.folder import load_folder

    digits = data.test_set("mnist")
    for name, label in (("zero", 0), ("one", 1)):
        (tmp_path / "in" / name).mkdir(parents=True)
        for k, image in enumerate(digits.images[digits.labels == label][:3]):
            Image.fromarray((image[0] * 255).byte().numpy()).save(tmp_path / "in" / name / f"{k}.png")
    images, report = load_folder(tmp_path / "in")
    model = models.GlyphNet(2).to(device)
    agree, gaps = your_own_images.export_agreement([model], images, report.files, "glyphnet", tmp_path / "out")
    assert agree == [6] and gaps[0] < 1e-4
