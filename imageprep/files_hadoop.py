"""The file layer's fallback: a classic SparkSession's Hadoop FileSystem API, through py4j.

Used only for URIs PyArrow cannot open here (a scheme it has no client for, or HDFS without
libhdfs), with the session's Hadoop configuration (credentials, endpoints). The operations are
those of `files.Files`.
"""
from __future__ import annotations

from datetime import datetime, timezone

from .errors import ProjectError
from .file_info import FileInfo


class HadoopFiles:
    def __init__(self, spark):
        self._spark = spark  # a SparkSession, or a function that starts one

    def session(self):
        spark = self._spark
        if callable(spark):
            spark = self._spark = spark()
        try:
            spark._jvm  # noqa: B018  (a Connect session raises here)
        except Exception:
            raise ProjectError("this file system is reached through Hadoop, which needs a classic Spark "
                               "session (a target with `master`), not Spark Connect") from None
        return spark

    def _jvm_path(self, uri: str):
        spark = self.session()
        jpath = spark._jvm.org.apache.hadoop.fs.Path(uri)
        return spark, jpath, jpath.getFileSystem(spark._jsc.hadoopConfiguration())

    def info(self, uri: str) -> FileInfo | None:
        _, path, fs = self._jvm_path(uri)
        if not fs.exists(path):
            return None
        return _info(fs.getFileStatus(path))

    def list(self, uri: str) -> list[str]:
        """Names of the entries of a folder (not recursive)."""
        _, path, fs = self._jvm_path(uri)
        if not fs.exists(path):
            raise FileNotFoundError(uri)
        return [status.getPath().getName() for status in fs.listStatus(path)]

    def walk(self, uri: str, recursive: bool) -> list[FileInfo]:
        _, path, fs = self._jvm_path(uri)
        found, files = [], fs.listFiles(path, recursive)
        while files.hasNext():
            found.append(_info(files.next()))
        return found

    def mkdirs(self, uri: str) -> None:
        _, path, fs = self._jvm_path(uri)
        fs.mkdirs(path)

    def read_bytes(self, uri: str) -> bytes:
        spark, path, fs = self._jvm_path(uri)
        stream = fs.open(path)
        try:
            return bytes(spark._jvm.org.apache.commons.io.IOUtils.toByteArray(stream))
        finally:
            stream.close()

    def write_bytes(self, uri: str, data: bytes) -> None:
        _, path, fs = self._jvm_path(uri)
        out = fs.create(path, True)
        try:
            out.write(bytearray(data))
        finally:
            out.close()

    def create_new(self, uri: str, data: bytes) -> bool:
        """Write a file that must not exist yet; False if it does (atomic where Hadoop's create is)."""
        _, path, fs = self._jvm_path(uri)
        try:
            out = fs.create(path, False)
        except Exception as exc:  # py4j's error names the Java exception
            if "FileAlreadyExistsException" in str(exc):
                return False
            raise
        try:
            out.write(bytearray(data))
        finally:
            out.close()
        return True

    def rename_over(self, source: str, dest: str) -> None:
        """Rename, replacing `dest`: FileContext's atomic rename with OVERWRITE where the file
        system has one (HDFS), else delete then rename."""
        spark, src, fs = self._jvm_path(source)
        jvm = spark._jvm
        dst = jvm.org.apache.hadoop.fs.Path(dest)
        try:
            context = jvm.org.apache.hadoop.fs.FileContext.getFileContext(src.toUri(), spark._jsc.hadoopConfiguration())
            options = spark.sparkContext._gateway.new_array(jvm.org.apache.hadoop.fs.Options.Rename, 1)
            options[0] = jvm.org.apache.hadoop.fs.Options.Rename.OVERWRITE
            context.rename(src, dst, options)
            return
        except Exception as exc:  # no AbstractFileSystem for the scheme, or an unsupported rename
            if "UnsupportedFileSystemException" not in str(exc) and "UnsupportedOperationException" not in str(exc):
                raise
        fs.delete(dst, False)
        if not fs.rename(src, dst):
            raise OSError(f"could not rename {source} to {dest}")

    def delete(self, uri: str) -> None:
        _, path, fs = self._jvm_path(uri)
        fs.delete(path, True)

    def copy(self, source: str, dest: str) -> None:
        spark, src, fs = self._jvm_path(source)
        _, dst, dest_fs = self._jvm_path(dest)
        spark._jvm.org.apache.hadoop.fs.FileUtil.copy(fs, src, dest_fs, dst, False, spark._jsc.hadoopConfiguration())


def _info(status) -> FileInfo:
    modified = datetime.fromtimestamp(status.getModificationTime() / 1000, tz=timezone.utc)
    return FileInfo(str(status.getPath().toString()), int(status.getLen()), modified, bool(status.isDirectory()))
