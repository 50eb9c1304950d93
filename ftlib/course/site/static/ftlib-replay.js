// Replay sliders of the rendered Fine-Tuning Lab: every value's output is already in the page (one hidden frame per
// value, drawn by `python -m ftlib refresh`); moving the range input shows its frame. No kernel, no network.
"use strict";

function ftlibReplay(box) {
  const labels = JSON.parse(box.dataset.labels);
  const input = box.querySelector("input[type=range]");
  const shown = box.querySelector("output");
  const frames = Array.from(box.querySelectorAll(":scope > .ftlib-replay-frame"));
  const draw = () => {
    const index = Number(input.value);
    frames.forEach((frame, i) => { frame.hidden = i !== index; });
    shown.textContent = labels[index];
  };
  input.addEventListener("input", draw);
  draw();
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".ftlib-replay").forEach(ftlibReplay);
});
