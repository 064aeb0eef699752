-- One row per file that is a usable image: its label, file facts and original size (after EXIF
-- orientation). The decoded pixels are in images_resized, which decodes each file once.
-- Files that are not usable are in image_errors; together they account for every file.
select
    path,
    label,
    size_bytes,
    modified_at,
    content_sha256,
    width,
    height,
    image.nChannels as n_channels
from {{ ref('images_resized') }}
