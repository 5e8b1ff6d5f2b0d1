# facenet-pytorch finds its MTCNN weights (data/*.pt) relative to its source files: ship them, and
# keep the package as source files so that relative path exists in the bundle.
from PyInstaller.utils.hooks import collect_data_files

datas = collect_data_files("facenet_pytorch", includes=["data/*.pt"])
module_collection_mode = "pyz+py"
