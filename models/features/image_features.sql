-- Hand-crafted features: colour histogram and channel statistics of the resized image (what the
-- model sees), and a perceptual hash of the whole original image for near-duplicate search.
select
    r.path,
    color_histogram(r.image, {{ var('histogram_bins') }}) as color_histogram,
    image_stats(r.image) as image_stats,
    phash(s.image) as phash
from {{ ref('images_resized') }} r
join {{ ref('stg_images') }} s on s.path = r.path
