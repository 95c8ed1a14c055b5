// The one bundle entry: every workflow the worker registers.
export { killSwitch } from './killSwitch';
export { enrichDetection } from './enrich';
export { deliverEvents } from './deliver';
