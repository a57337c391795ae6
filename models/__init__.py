"""The bundled example model repository (`<name>/<version>/model.onnx`); see build.py."""
