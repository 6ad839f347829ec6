"""The use cases: what the command line, the server, the experiments and the quickstart do, each one
a function of a typed request that returns a result object. The front ends only parse their input
into a request and render the result.

* :mod:`~arlm.usecases.data`: a corpus, a tokenizer trained on it, the encoded training splits
  (:func:`~arlm.usecases.data.prepare_data`) and a split to score
  (:func:`~arlm.usecases.data.encode_split`);
* :mod:`~arlm.usecases.checkpoints`: model folders of every family and ARPA files, GPT-2 import and
  export, the checks before a resumed run;
* :mod:`~arlm.usecases.train`: ``arlm train ngram`` and ``arlm train FAMILY``
  (:class:`~arlm.usecases.train.NgramRequest`, :class:`~arlm.usecases.train.TrainRequest`);
* :mod:`~arlm.usecases.decoding`: a prompt encoded, a :class:`~arlm.decode.config.DecodingConfig`
  applied, drafts and int8 weights;
* :mod:`~arlm.usecases.generate`: ``arlm generate`` (:class:`~arlm.usecases.generate.GenerateRequest`),
  timed runs, beam search's n-best, models that write in another order;
* :mod:`~arlm.usecases.sample`: ``arlm sample`` (:class:`~arlm.usecases.sample.SampleRequest`): texts and
  images drawn in the model's order, shown in reading order;
* :mod:`~arlm.usecases.evaluate`: ``arlm eval`` (:class:`~arlm.usecases.evaluate.EvalRequest`): the
  likelihood of a split in the model's order, σ-GPT's random orders, the int8 comparison.

The layers below (``data``, ``models``, ``train``, ``evaluate``, ``decode``, ``interop``) never import
this package.
"""
