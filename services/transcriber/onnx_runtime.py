"""One way to open the diarizer's ONNX graphs (CAM++, segmentation-3.0) on onnxruntime's CPU provider."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def cpu_session(graph: Path, threads: int = 1) -> ort.InferenceSession:
    """A session that runs one operator at a time on `threads` threads without spinning: on a 2-core machine with
    the recogniser (or anything) busy on the other core, two threads were 1.6-1.8x slower per CAM++ window than one,
    and spinning threads slower still."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
