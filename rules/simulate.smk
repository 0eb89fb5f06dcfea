# Simulation: one job per shard of lens images (deeplenstronomy), each a Zarr store with its YAML.


rule simulate:
    output:
        store=directory(SHARD),
        yaml=SHARD_YAML,
        provenance=SHARD_PROVENANCE,
    log:
        log_path("simulate", "{shard}"),
    benchmark:
        bench_path("simulate", "{shard}")
    params:
        settings=simulate_params,
    threads: 1
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/simulate.py"
