-- One row per file under images_path that could not be used, with the reason: the files that
-- did not decode into images_resized. Only these files are decoded again, to say why.
select
    f.path,
    f.relative_path,
    f.label,
    f.size_bytes,
    f.modified_at,
    f.content_sha256,
    image_error(s.content, s.path) as reason
from {{ ref('stg_files') }} f
left anti join {{ ref('images_resized') }} i on i.path = f.path and i.content_sha256 = f.content_sha256
join {{ source('raw', 'images') }} s on s.path = f.path
