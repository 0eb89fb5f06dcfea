# Split: the shards into train and test stores, and the normalisation statistics of the training part.


rule split:
    input:
        shards=expand(SHARD, shard=shard_ids()),
    output:
        train=directory(TRAIN_STORE),
        test=directory(TEST_STORE),
        normalisation=NORMALISATION,
        provenance=SPLIT_PROVENANCE,
    log:
        log_path("split"),
    benchmark:
        bench_path("split")
    params:
        split=config["split"],
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=by_attempt(split_mem_mb()),
    conda:
        "../envs/lenspipe.yaml"
    script:
        "../scripts/split.py"
