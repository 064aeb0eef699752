-- One row per image that decodes: pixels in RGB order, EXIF orientation applied.
-- Files that do not decode are in image_errors instead; together they account for every file.
with decoded as (
    select
        path,
        relative_path,
        sha2(content, 256) as content_sha256,
        try_decode_image(content, path) as result
    from {{ source('raw', 'images') }}
)
select
    path,
    {{ label_from_path('relative_path') }} as label,
    content_sha256,
    result.image.width as width,
    result.image.height as height,
    result.image.nChannels as n_channels,
    result.image as image
from decoded
where result.error is null
