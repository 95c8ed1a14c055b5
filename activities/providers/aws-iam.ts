/** The aws_iam provider moved to lib/systems/aws-iam-provider.ts; kept for test/e2e/aws.e2e.test.ts's import. */
export { SESSIONS_POLICY } from '../../lib/systems/aws-iam-provider';
