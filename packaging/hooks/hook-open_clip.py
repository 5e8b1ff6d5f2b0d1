# open_clip reads its model configs (model_configs/*.json) and the BPE vocabulary
# (bpe_simple_vocab_16e6.txt.gz) from its package folder at import time.
from PyInstaller.utils.hooks import collect_data_files, collect_submodules

datas = collect_data_files("open_clip", includes=["model_configs/*.json", "*.txt.gz"])
hiddenimports = collect_submodules("open_clip")
