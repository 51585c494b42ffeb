"""Files in and out: checkpoints (`checkpoint`), weight files (`weights`), ONNX models (`onnx`),
and the atomic write they share (`atomic`). The data loaders (`numgru.data`) and the weight
converters (`numgru.convert`) keep their public places beside this package."""
