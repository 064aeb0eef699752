-- Nothing is lost: each file of the source is in stg_images or image_errors, and not both.
select f.path,
       (s.path is not null) as in_stg_images,
       (e.path is not null) as in_image_errors
from {{ source('raw', 'images') }} f
left join {{ ref('stg_images') }} s on s.path = f.path
left join {{ ref('image_errors') }} e on e.path = f.path
where (s.path is null) = (e.path is null)
