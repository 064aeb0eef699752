-- augment_copies augmented versions of each training image (copy_index 1..K; 0 is the
-- original in train_set). Every random choice comes from the seed, the path and the copy
-- index, so a rebuild or a retried Spark task gives the same bytes.
select
    r.path,
    cast(c.pos + 1 as int) as copy_index,
    c.image
from {{ ref('images_resized') }} r
join {{ ref('splits') }} s on s.path = r.path and s.split = 'train'
lateral view posexplode(
    augment_copies(r.image, '{{ var("augment_ops") }}', {{ var('seed') }}, {{ var('augment_copies') }})
) c as pos, image
