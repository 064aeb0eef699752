-- The benchmark's work: decode, RGB, resize to image_size (bilinear, stretch), ImageNet float32
-- tensor, histogram_bins-bin histogram per channel, all in one prepare_image call per file.
--
-- Why LATERAL VIEW inline(array(...)) and not a subquery with `where p.error is null`: Spark 4.3
-- pushes such a filter below the projection that computes p, so the Python function would run
-- twice per file, once for the filter and once for the columns (SPARK-47672). The filter on a
-- generator's output stays above it, and each file is prepared once.
select
    path,
    case when instr(relative_path, '/') > 0 then substring_index(relative_path, '/', 1) end as label,
    p.width,
    p.height,
    p.image.data as pixels,
    p.tensor,
    p.histogram
from {{ source('raw', 'images') }}
lateral view inline(array(
    prepare_image(content, path, {{ var('image_size') }}, {{ var('image_size') }}, 'stretch', 'bilinear',
                  'imagenet', {{ var('histogram_bins') }})
)) p
where p.error is null
