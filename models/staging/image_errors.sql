-- One row per file under images_path that could not be used, with the reason.
select
    path,
    relative_path,
    {{ label_from_path('relative_path') }} as label,
    size_bytes,
    reason
from (
    select path, relative_path, length as size_bytes, image_error(content, path) as reason
    from {{ source('raw', 'images') }}
)
where reason is not null
