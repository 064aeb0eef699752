-- Every image at image_size x image_size, by resize_mode (cover: shorter side to size, centre crop).
select
    path,
    label,
    resize(image, {{ var('image_size') }}, {{ var('image_size') }},
           '{{ var("resize_mode") }}', '{{ var("interpolation") }}') as image
from {{ ref('stg_images') }}
