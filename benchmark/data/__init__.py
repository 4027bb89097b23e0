"""Data sets as in-memory tensors: the catalogue (:mod:`.catalog`: registry, ``load_dataset``),
splits and load requests (:mod:`.splits`), where files are looked for (:mod:`.roots`), and one
module per source: IDX files (:mod:`.idx`), image folders and their cache (:mod:`.imagefolder`,
:mod:`.omniglot`, :mod:`.celeba`, :mod:`.ffhq`) and the 2-D toy sets (:mod:`.toys`)."""
