# torchvision ≥ 0.2x names its extension _C_stable.so, which the stock hook misses: without it
# `import torchvision` fails in the bundle ("operator torchvision::nms does not exist").
from PyInstaller.utils.hooks import collect_dynamic_libs

binaries = collect_dynamic_libs("torchvision", search_patterns=["*.so", "*.dll", "*.dylib", "*.pyd"])
