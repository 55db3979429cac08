export { normaliseFrame, normaliseMessage } from './normalise.js';
export {
  DEFAULT_KEY_OPTIONS,
  KEY_PARTS,
  dedupKeyOf,
  explain,
  normaliseSignal,
  parseKeyOptions,
  type DedupSignal,
  type Explanation,
  type KeyOptions,
  type KeyPart,
  type NormalisedParts,
} from './keys.js';
