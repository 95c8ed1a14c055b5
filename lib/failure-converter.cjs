// Loaded by path (DataConverter.failureConverterPath) in the worker, the clients and the workflow
// sandbox, hence CommonJS: failure messages and stack traces go into an encoded attributes payload,
// which the payload codec encrypts like every other payload.
/* global require, exports */
/* eslint-disable @typescript-eslint/no-require-imports */
const { DefaultFailureConverter } = require('@temporalio/common');

exports.failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
